"""The suite-wide secret check (tests/conftest.py, pytest_sessionfinish) finds a token wherever it is.

After every run, on every worker, all log records of the whole suite, with all their fields, are
searched for the test tokens; one hit fails the run. These tests prove that check can fail.
"""

from __future__ import annotations

import logging

from tests.conftest import EVERY_LOG_RECORD, SECRETS, find_leaks


def test_a_token_anywhere_in_a_log_record_is_found() -> None:
    lines = ["request refused {}", f"oops {{'headers': {{'Authorization': 'Bearer {SECRETS[0]}'}}}}"]
    assert find_leaks(lines) == [lines[1]]


def test_every_log_record_is_captured_with_its_fields() -> None:
    logging.getLogger("autoblock.test").warning("checking", extra={"detail": "a field value"})
    assert "a field value" in EVERY_LOG_RECORD.lines[-1]
