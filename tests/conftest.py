"""Settings for every test: UTC, fake credentials, no tracing; no request to a real endpoint, and
nothing a test starts outlives it."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.httpsession import URLLib3Session

pytest_plugins = ["tests.support.iam_plugin"]  # every AWS call of a function, evaluated against its policy

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


SECRETS = (
    "test-token-0123456789abcdefghijklmnopqrstuvwxyzABCD",  # tests.integration.conftest.TOKEN
    "rotated-token-value",  # the rotated token of test_api
)


def find_leaks(lines: list[str]) -> list[str]:
    """The log lines that carry a token."""
    return [line[:200] for line in lines if any(secret in line for secret in SECRETS)]


class RealEndpointRefused(RuntimeError):
    """A test's AWS request was about to leave the machine."""


_SEND = URLLib3Session.send


def _loopback_only(self: URLLib3Session, request: Any) -> Any:
    host = (urlsplit(request.url).hostname or "").strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise RealEndpointRefused(f"a test tried to send {request.method} {request.url}: refused, nothing was sent")
    return _SEND(self, request)


@pytest.fixture(autouse=True, scope="session")
def _no_real_endpoint() -> Iterator[None]:
    """For the whole session, botocore sends nothing to a host that is not this machine (moto answers
    what it serves before botocore sends; the local stack's servers are on 127.0.0.1)."""
    with mock.patch.object(URLLib3Session, "send", _loopback_only):
        yield


THREAD_GRACE_SECONDS = 5.0


@pytest.fixture(autouse=True)
def _no_thread_outlives_its_test() -> Iterator[None]:
    """Every thread a test started (daemon or not) has ended by the end of its teardown, give or
    take a short grace for threads that are finishing: a thread left running would act on the next
    test's resources, and print while pytest swaps sys.stdout (which crashes CPython 3.13.0)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + THREAD_GRACE_SECONDS
    started = [t for t in threading.enumerate() if t not in before]
    for thread in started:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [f"{t.name} (daemon={t.daemon})" for t in started if t.is_alive()]
    assert alive == [], f"threads outlived their test: {alive}"


def pytest_configure(config: pytest.Config) -> None:
    # Workers (pytest-xdist) inherit this folder and leave their log records there.
    os.environ.setdefault("AUTOBLOCK_TEST_LOGS", tempfile.mkdtemp(prefix="autoblock-logs-"))


@pytest.fixture(autouse=True)
def _no_token_in_logs() -> Iterator[None]:
    """Every test's log records (all fields) are searched for the tokens: a leak fails that test."""
    start = len(EVERY_LOG_RECORD.lines)
    yield
    leaks = find_leaks(EVERY_LOG_RECORD.lines[start:])
    assert leaks == [], "a token reached a log record"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """And once more over the whole run (records logged by background threads after their test)."""
    folder = Path(os.environ["AUTOBLOCK_TEST_LOGS"])
    worker = getattr(session.config, "workerinput", {}).get("workerid")
    if worker is not None:
        (folder / f"{worker}.log").write_text("\n".join(find_leaks(EVERY_LOG_RECORD.lines)))
        return
    leaks = find_leaks(EVERY_LOG_RECORD.lines) + [
        line for log in folder.glob("*.log") for line in log.read_text().splitlines() if line
    ]
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"FAILED suite-wide secret check: a token in {len(leaks)} log lines", red=True)
        raise pytest.UsageError(f"a token reached {len(leaks)} log records")  # fails the run loudly
