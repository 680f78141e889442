"""A GuardDuty finding becomes blocks: one per (address, direction) the extractor names.

Each address goes through the same ``Lifecycle.open`` as an API request: a new address gets a
pending block and its own execution; an address with a live block has it extended (a finding sent
again, or two findings naming one address, never take a second rule number).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from autoblock.errors import AutoblockError, MemberUnreachable
from autoblock.logic import refs
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
    nacls_skipped: list[dict[str, str]] = field(default_factory=list)  # NaclFromFinding: NACLs left alone

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
    nacl_ids, nowhere = _where(extraction, lifecycle, outcome)
    if nowhere is not None:
        outcome.skipped += [{"address": t.address, "reason": nowhere} for t in extraction.targets]
        logger.info("finding not blocked", extra={"finding_id": extraction.finding_id, "reason": nowhere})
        return outcome
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
            opened = lifecycle.open(
                request, source=source, nacl_ids=nacl_ids, targets=lifecycle.settings.guardduty_targets
            )
        except AutoblockError as exc:  # another direction already blocked, never blockable, full, busy
            outcome.refused.append({**entry, "reason": str(exc)})
            continue
        {"created": outcome.created, "extended": outcome.extended, "dry-run": outcome.dry_run}[opened.outcome].append(
            {**entry, "block_id": opened.block.id}
        )
        outcome.extended += [{**entry, "block_id": other.id} for other in opened.others]
    logger.info(
        "finding handled",
        extra={
            "finding_id": extraction.finding_id,
            "blocks_created": len(outcome.created),
            "blocks_extended": len(outcome.extended),
            "dry_runs": len(outcome.dry_run),
            "refused": outcome.refused,
            "skipped": outcome.skipped,
            "nacls_skipped": outcome.nacls_skipped,
        },
    )
    return outcome


def _where(
    extraction: Extraction, lifecycle: Lifecycle, outcome: FindingOutcome
) -> tuple[list[str] | None, str | None]:
    """The NACLs a finding's blocks go in: those configured in the account and Region it came from
    (organization mode; the configured ones otherwise), and with NaclFromFinding those of the
    affected resource's subnets that are tagged ``autoblock:managed=true``. None for the configured
    ones; a reason instead when there is nowhere to block."""
    settings = lifecycle.settings
    home = (settings.home_account_id, settings.home_region)
    here = (extraction.account_id, extraction.region)
    local = here == home or not extraction.account_id
    if not settings.organization and not settings.nacl_from_finding:
        return None, None  # the single-account behaviour: every configured NACL
    if settings.organization:
        location = refs.HOME if local else f"{extraction.account_id}:{extraction.region}"
        chosen = [ref for ref in settings.nacl_refs if refs.location_of(ref) == location]
    elif local:
        location, chosen = refs.HOME, list(settings.nacl_refs)
    else:
        return None, None  # single-account: a finding of another account blocks here, as it always has
    if settings.nacl_from_finding and extraction.subnet_ids:
        try:
            managed, untagged = lifecycle.nacls.managed_for_subnets(location, list(extraction.subnet_ids))
        except MemberUnreachable as exc:
            managed, untagged = [], [(f"subnets {', '.join(extraction.subnet_ids)}", str(exc))]
        chosen += [ref for ref in managed if ref not in chosen]
        outcome.nacls_skipped = [{"nacl": ref, "reason": why} for ref, why in untagged]
    if not chosen:
        return None, (
            f"{refs.describe(location)} is not configured in MemberNetworkAclIds"
            + (
                " and none of the resource's NACLs is tagged autoblock:managed=true"
                if settings.nacl_from_finding
                else ""
            )
            + "; not blocked anywhere else"
        )
    return chosen, None


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)
