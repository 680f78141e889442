"""The API token, read from Secrets Manager and kept for a while: a warm container reads it once every
``max_age`` seconds, so a rotated token is picked up within that time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from autoblock.dal.aws import client, translated

TOKEN_CACHE_SECONDS = 300.0


class Secret:
    def __init__(
        self, secret_id: str, max_age: float = TOKEN_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.secret_id = secret_id
        self.max_age = max_age
        self.clock = clock
        self._value: tuple[float, str] | None = None
        self._lock = threading.Lock()

    def value(self) -> str:
        with self._lock:
            if self._value is not None and self.clock() - self._value[0] < self.max_age:
                return self._value[1]
        with translated("GetSecretValue"):
            secret = str(client("secretsmanager").get_secret_value(SecretId=self.secret_id)["SecretString"])
        with self._lock:
            self._value = (self.clock(), secret)
        return secret

    def forget(self) -> None:
        """Read it again on next use (a rotation that cannot wait for ``max_age``)."""
        with self._lock:
            self._value = None
