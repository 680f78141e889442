"""The API token never appears in a log line: checked over everything the whole suite logged."""

from __future__ import annotations

import pytest

from tests.conftest import EVERY_LOG_RECORD

SECRETS = [
    "test-token-0123456789abcdefghijklmnopqrstuvwxyzABCD",  # tests.integration.conftest.TOKEN
    "rotated-token-value",  # the rotated token of test_api
]


@pytest.mark.last
def test_no_token_in_any_log_record_of_the_suite() -> None:
    assert len(EVERY_LOG_RECORD.lines) > 10, "the suite logged (almost) nothing: the capture is broken"
    leaks = [line[:200] for line in EVERY_LOG_RECORD.lines if any(s in line for s in SECRETS)]
    assert leaks == []
