"""Expiry lag: from a block's ``expires_at`` to its address being gone from where it was denied."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def lags_until_gone[K: Hashable](expiries: dict[K, int], present: Callable[[], set[K]], timeout: float) -> list[float]:
    """Poll ``present`` every 50 ms until each key of ``expiries`` was seen and then gone; each one's
    time gone minus its expiry."""
    gone: dict[K, float] = {}
    seen: set[K] = set()
    deadline = time.time() + timeout
    while len(gone) < len(expiries) and time.time() < deadline:
        now_present = present()
        now = time.time()
        seen |= now_present
        for key in seen - now_present - gone.keys():
            gone[key] = now
        time.sleep(0.05)
    return [gone[k] - expiries[k] for k in gone]


def summary(blocks: int, lags: list[float]) -> dict[str, Any]:
    return {
        "blocks": blocks,
        "removed": len(lags),
        "p50_s": round(percentile(lags, 0.5), 2),
        "p99_s": round(percentile(lags, 0.99), 2),
        "max_s": round(max(lags), 2),
        "early": sum(lag < 0 for lag in lags),
    }
