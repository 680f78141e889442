"""Settings for every test: UTC, fake credentials, no tracing, and a fake Lambda context."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

import pytest

# Before anything creates a boto3 client: never the user's credentials, never a real endpoint.
os.environ["TZ"] = "UTC"  # moto's Wait compares timestamps against the local clock
time.tzset()
for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(name, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "autoblock",
        "POWERTOOLS_METRICS_NAMESPACE": "autoblock",  # as template.yaml sets it, before handlers import
        "POWERTOOLS_DEV": "false",
    }
)


@dataclass
class FakeLambdaContext:
    function_name: str = "autoblock-test"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:autoblock-test"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/autoblock-test"
    log_stream_name: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class _EveryLogRecord(logging.Handler):
    """Keeps every log record of the whole run, rendered with all its fields."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def handle(self, record: logging.LogRecord) -> bool:
        # Powertools puts a filter on every root handler that drops its own loggers' records
        # (they have their own handler); this capture wants them all, so it ignores filters.
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {json.dumps(record.__dict__, default=str)}")


EVERY_LOG_RECORD = _EveryLogRecord()
logging.getLogger().addHandler(EVERY_LOG_RECORD)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``last`` look at what the whole run did: run them after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "last: runs after every other test (it inspects the whole run)")
