"""Repeat offenders get longer blocks (pure).

An address's new block lasts ``duration x factor^N`` seconds, at most MaxDurationSeconds, where N is
the number of its earlier blocks that were applied and started within the last
EscalationWindowDays. Factor 1 or a window of 0 days switch it off.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_SECONDS = 86400


@dataclass(frozen=True)
class Escalation:
    duration: int
    previous: int
    reason: str
    capped: bool


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def escalate(duration: int, previous: int, factor: float, window_days: int, max_duration: int) -> Escalation | None:
    """The escalated duration of a new block whose address had ``previous`` applied blocks within
    the window, with the arithmetic in words; None when nothing escalates."""
    if previous < 1 or factor <= 1 or window_days < 1:
        return None
    wanted = float(duration)
    for _ in range(previous):  # step by step: factor^N overflows a float long before N is large
        wanted *= factor
        if wanted >= max_duration:
            break
    capped = wanted > max_duration
    escalated = min(int(wanted), max_duration)
    arithmetic = f"{duration} s x {factor:g}^{previous}"
    if capped:
        result = f"{arithmetic} > {max_duration} s: capped at MaxDurationSeconds, {max_duration} s"
    else:
        result = f"{arithmetic} = {escalated} s (cap {max_duration} s)"
    reason = f"{ordinal(previous + 1)} block in {window_days} days: {result}"
    return Escalation(escalated, previous, reason, capped)
