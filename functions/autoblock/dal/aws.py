"""boto3 clients (made on first use, once per process) and the one translation of AWS faults.

Every call to AWS in this package runs inside ``translated(what)``: a fault that outlived botocore's
own retries (throttling, a 5xx, a timeout, a transaction cancelled by a concurrent one) becomes
``TransientAwsError``, which the state machine retries; any other ``ClientError`` reaches the caller,
which reads its code (``error_code``) where a code means something.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from autoblock.errors import TransientAwsError

CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10)

TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "TooManyRequestsException",
        "TransactionInProgressException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "Unavailable",
    }
)
# DynamoDB cancels a transaction that touches an item another transaction is writing at that moment
# (a burst on one address, the sweeper beside a release) with this reason: try again, nothing is wrong.
CONFLICT_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})


@cache
def client(service: str) -> Any:
    """Clients are thread-safe: one per service and process, made when first needed."""
    return boto3.client(service, config=CONFIG)  # type: ignore[call-overload]


def dynamodb_table(name: str) -> Any:
    """Resources are not thread-safe: one per table and thread (a Lambda process has one thread)."""
    return _table(name, threading.get_ident())


@cache
def _table(name: str, thread: int) -> Any:
    return boto3.resource("dynamodb", config=CONFIG).Table(name)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def cancellation_reasons(exc: ClientError) -> list[str]:
    """The reason of each item of a cancelled TransactWriteItems, in the items' order."""
    return [str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons", [])]


def is_transient(exc: Exception) -> bool:
    if isinstance(exc, ClientError):
        if error_code(exc) == "TransactionCanceledException":
            reasons = set(cancellation_reasons(exc)) - {"None"}
            return bool(reasons) and reasons <= CONFLICT_REASONS
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in TRANSIENT_CODES or int(status) >= 500
    return isinstance(exc, BotoCoreError)  # connection errors and timeouts


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Run one AWS call; a transient fault becomes TransientAwsError naming ``what`` and the code."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        if is_transient(exc):
            code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
            reasons = cancellation_reasons(exc) if isinstance(exc, ClientError) else []
            detail = f" ({', '.join(r for r in reasons if r != 'None')})" if reasons else ""
            raise TransientAwsError(f"{what}: {code}{detail}") from exc
        raise
