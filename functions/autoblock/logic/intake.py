"""A GuardDuty finding becomes blocks: one per (address, direction) the extractor names.

Each address goes through the same ``Lifecycle.open`` as an API request: a new address gets a
pending block and its own execution; an address with a live block has it extended (a finding sent
again, or two findings naming one address, never take a second rule number).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from autoblock.errors import AutoblockError
from autoblock.logic.guardduty import Extraction, duration_for
from autoblock.logic.lifecycle import Lifecycle
from autoblock.models import BlockRequest

logger = Logger(service="autoblock", child=True)
REASON_LIMIT = 256


@dataclass
class FindingOutcome:
    finding_id: str
    outcome: str  # "handled" or "ignored"
    reason: str = ""
    duration: int = 0
    created: list[dict[str, str]] = field(default_factory=list)
    extended: list[dict[str, str]] = field(default_factory=list)
    dry_run: list[dict[str, str]] = field(default_factory=list)  # DryRun=true: recorded, not blocked
    refused: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str | None]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def handle_finding(extraction: Extraction, lifecycle: Lifecycle) -> FindingOutcome:
    settings = lifecycle.settings
    outcome = FindingOutcome(extraction.finding_id, "handled")
    outcome.skipped = [{"address": s.address, "reason": s.reason} for s in extraction.skipped]
    if extraction.ignored:
        outcome.outcome, outcome.reason = "ignored", extraction.ignored
    elif extraction.severity < settings.guardduty_min_severity:
        outcome.outcome = "ignored"
        outcome.reason = (
            f"severity {extraction.severity} is below GuardDutyMinSeverity ({settings.guardduty_min_severity})"
        )
    if outcome.outcome == "ignored":
        logger.info("finding ignored", extra={"finding_id": extraction.finding_id, "reason": outcome.reason})
        return outcome

    wanted = duration_for(
        extraction.severity,
        settings.guardduty_duration_low,
        settings.guardduty_duration_medium,
        settings.guardduty_duration_high,
    )
    outcome.duration = min(wanted, settings.max_duration_seconds)
    source = f"guardduty:{extraction.finding_id}"
    for target in extraction.targets:
        reason = f"{target.reason} (severity {extraction.severity})"  # the reason names the finding type
        request = BlockRequest(
            ip=target.address,
            duration=outcome.duration,
            reason=_printable(reason)[:REASON_LIMIT],
            direction=target.direction,
        )
        entry = {"address": target.address, "direction": target.direction}
        try:
            opened = lifecycle.open(request, source=source)
        except AutoblockError as exc:  # another direction already blocked, never blockable, full, busy
            outcome.refused.append({**entry, "reason": str(exc)})
            continue
        {"created": outcome.created, "extended": outcome.extended, "dry-run": outcome.dry_run}[opened.outcome].append(
            {**entry, "block_id": opened.block.id}
        )
    logger.info(
        "finding handled",
        extra={
            "finding_id": extraction.finding_id,
            "blocks_created": len(outcome.created),
            "blocks_extended": len(outcome.extended),
            "dry_runs": len(outcome.dry_run),
            "refused": outcome.refused,
            "skipped": outcome.skipped,
        },
    )
    return outcome


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)
