"""Escalation arithmetic: duration x factor^N, capped at MaxDurationSeconds."""

from __future__ import annotations

import pytest

from autoblock.logic.escalation import escalate, ordinal

MAX = 604800


def test_the_third_block_in_the_window_lasts_four_times_as_long() -> None:
    escalation = escalate(3600, previous=2, factor=2, window_days=30, max_duration=MAX)

    assert escalation is not None
    assert (escalation.duration, escalation.capped) == (14400, False)
    assert escalation.reason == "3rd block in 30 days: 3600 s x 2^2 = 14400 s (cap 604800 s)"


def test_exactly_at_the_cap_is_not_capped() -> None:
    escalation = escalate(3600, previous=1, factor=2, window_days=30, max_duration=7200)

    assert escalation is not None
    assert (escalation.duration, escalation.capped) == (7200, False)
    assert escalation.reason == "2nd block in 30 days: 3600 s x 2^1 = 7200 s (cap 7200 s)"


def test_over_the_cap_is_capped_and_says_so() -> None:
    escalation = escalate(3600, previous=3, factor=2, window_days=7, max_duration=20000)

    assert escalation is not None
    assert (escalation.duration, escalation.capped) == (20000, True)
    assert escalation.reason == "4th block in 7 days: 3600 s x 2^3 > 20000 s: capped at MaxDurationSeconds, 20000 s"


def test_a_huge_repeat_count_stays_at_the_cap_without_overflow() -> None:
    escalation = escalate(60, previous=5000, factor=10, window_days=30, max_duration=MAX)
    assert escalation is not None and escalation.duration == MAX


def test_a_fractional_factor_rounds_down() -> None:
    escalation = escalate(100, previous=2, factor=1.5, window_days=30, max_duration=MAX)
    assert escalation is not None and escalation.duration == 225
    assert "100 s x 1.5^2 = 225 s" in escalation.reason


@pytest.mark.parametrize(
    ("previous", "factor", "window_days"),
    [(0, 2, 30), (3, 1, 30), (3, 2, 0)],
    ids=["first-block", "factor-1-is-off", "window-0-is-off"],
)
def test_nothing_escalates(previous: int, factor: float, window_days: int) -> None:
    assert escalate(3600, previous, factor, window_days, MAX) is None


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (102, "102nd"),
    ],
)
def test_ordinals(n: int, text: str) -> None:
    assert ordinal(n) == text
