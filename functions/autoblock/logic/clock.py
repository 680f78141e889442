"""Expiry arithmetic (pure). Times are whole epoch seconds; ISO strings are UTC and end in 'Z',
the form Step Functions' Wait.TimestampPath accepts everywhere."""

from __future__ import annotations

import math
from datetime import UTC, datetime


def expiry(now: float, duration_seconds: int) -> int:
    """The epoch second a block of ``duration_seconds`` requested at ``now`` ends (rounded up)."""
    return math.ceil(now) + duration_seconds


def later(current: int, requested: int) -> int:
    """An extension never shortens a block: the expiry becomes the later of the two."""
    return max(current, requested)


def iso_z(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_left(expires_at: int, now: float) -> int:
    return max(0, math.ceil(expires_at - now))


def from_iso_z(text: str) -> int:
    """The epoch second of an ``iso_z`` string."""
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
