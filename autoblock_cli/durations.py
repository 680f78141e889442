"""Durations as people type them (``90s``, ``30m``, ``1h30m``, ``7d``, ``3600``) and as the CLI shows them (pure)."""

from __future__ import annotations

import re

UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
MAX_SECONDS = 10 * 365 * 86_400  # ten years: anything longer is a typo, not a block
_BARE = re.compile(r"[0-9]{1,12}")
_PART = re.compile(r"([0-9]{1,12})([dhms])")
_WHOLE = re.compile(r"(?:[0-9]{1,12}[dhms])+")


class DurationError(ValueError):
    """The text is not a duration the CLI accepts; the message says why, for the user."""


def parse_duration(text: str) -> int:
    """Seconds in ``text``: a bare number of seconds or unit parts in the order d, h, m, s (``1h30m``)."""
    cleaned = text.strip().lower()
    if not cleaned:
        raise DurationError("the duration is empty: use e.g. 90s, 30m, 12h, 7d, 1h30m or a number of seconds")
    if cleaned.startswith("-"):
        raise DurationError(f"'{text}' is not a positive duration")
    if _BARE.fullmatch(cleaned):
        seconds = int(cleaned)
    elif _WHOLE.fullmatch(cleaned):
        parts = _PART.findall(cleaned)
        units = [unit for _, unit in parts]
        if len(set(units)) != len(units) or units != sorted(units, key=list(UNITS).index):
            raise DurationError(f"'{text}': give each unit once, largest first (e.g. 1d12h, 1h30m)")
        seconds = sum(int(number) * UNITS[unit] for number, unit in parts)
    else:
        raise DurationError(f"'{text}' is not a duration: use e.g. 90s, 30m, 12h, 7d, 1h30m or a number of seconds")
    if seconds <= 0:
        raise DurationError(f"'{text}' is not a positive duration")
    if seconds > MAX_SECONDS:
        raise DurationError(f"'{text}' is longer than ten years")
    return seconds


def format_duration(seconds: int) -> str:
    """The two largest units of a positive number of seconds: ``1h 30m``, ``2d 3h``, ``45s``; ``0s`` when none."""
    if seconds <= 0:
        return "0s"
    parts: list[str] = []
    for unit, size in UNITS.items():
        count, seconds = divmod(seconds, size)
        if count or parts:
            parts.append(f"{count}{unit}")
    shown = [part for part in parts[:2] if not part.startswith("0")]
    return " ".join(shown) or parts[0]
