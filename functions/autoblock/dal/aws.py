"""boto3 clients (created once per process) and the translation of AWS faults into domain errors."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from autoblock.errors import TransientAwsError

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10)

TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "TooManyRequestsException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "Unavailable",
    }
)


@cache
def client(service: str) -> Any:
    """Clients are thread-safe: one per service and process."""
    return boto3.client(service, config=_CONFIG)  # type: ignore[call-overload]


def dynamodb_table(name: str) -> Any:
    """Resources are not thread-safe: one per table and thread (a Lambda process has one thread)."""
    return _table(name, threading.get_ident())


@cache
def _table(name: str, thread: int) -> Any:
    return boto3.resource("dynamodb", config=_CONFIG).Table(name)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_transient(exc: Exception) -> bool:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in TRANSIENT_CODES or int(status) >= 500
    return isinstance(exc, BotoCoreError)  # connection errors and timeouts


def transient(exc: Exception, what: str) -> TransientAwsError:
    """Wrap a fault that outlived botocore's retries so the state machine retries the task."""
    code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    return TransientAwsError(f"{what}: {code}")
