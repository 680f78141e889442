"""The CLI's duration parser: what people type for --for, and what it refuses."""

from __future__ import annotations

import pytest

from autoblock_cli.durations import MAX_SECONDS, DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("12h", 43_200),
        ("7d", 604_800),
        ("1h30m", 5400),
        ("1d12h", 129_600),
        ("2h0m5s", 7205),
        ("3600", 3600),
        ("1", 1),
        (" 15M ", 900),
        ("3650d", MAX_SECONDS),
    ],
)
def test_accepted_durations_are_their_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the duration is empty"),
        ("   ", "the duration is empty"),
        ("0", "'0' is not a positive duration"),
        ("0s", "'0s' is not a positive duration"),
        ("0h0m", "'0h0m' is not a positive duration"),
        ("-5", "'-5' is not a positive duration"),
        ("-5m", "'-5m' is not a positive duration"),
        ("5x", "'5x' is not a duration: use e.g. 90s, 30m, 12h, 7d, 1h30m or a number of seconds"),
        ("m", "'m' is not a duration"),
        ("1.5h", "'1.5h' is not a duration"),
        ("1h 30m", "'1h 30m' is not a duration"),
        ("30m1h", "'30m1h': give each unit once, largest first"),
        ("1h1h", "'1h1h': give each unit once, largest first"),
        ("3651d", "'3651d' is longer than ten years"),
        ("999999999999d", "'999999999999d' is longer than ten years"),
        ("9999999999999", "'9999999999999' is not a duration"),
        ("١٢", "'١٢' is not a duration"),  # non-ASCII digits are refused, not read as 12
    ],
)
def test_refused_durations_say_why(text: str, message: str) -> None:
    with pytest.raises(DurationError) as refused:
        parse_duration(text)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (45, "45s"),
        (90, "1m 30s"),
        (3600, "1h"),
        (3605, "1h"),
        (5400, "1h 30m"),
        (186_000, "2d 3h"),
        (0, "0s"),
        (-3, "0s"),
    ],
)
def test_time_left_is_shown_in_its_two_largest_units(seconds: int, shown: str) -> None:
    assert format_duration(seconds) == shown
