"""`autoblock block --from-finding`: the addresses a GuardDuty finding names, for a person to confirm.

The finding goes through the extractor the FromFinding task runs (autoblock.logic.guardduty), so the
CLI offers the same targets in the same directions. Its address gate runs here with the default
policy only (the never-block list: private, loopback, link-local…): the deployment's allowlist and
prefix limits are the API's, which judges every request. An attack sequence, which the workflow
never blocks on its own, offers every public address of its endpoints.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

SOURCE_PREFIX = "cli:finding:"
SOURCE_LIMIT = 80  # autoblock.models.SourceLabel
REASON_LIMIT = 256  # autoblock.models.Reason
_SOURCE_CHARS = re.compile(r"[^A-Za-z0-9 ._:/@+-]")


class FindingFileError(ValueError):
    """The file is not a GuardDuty finding autoblock can read."""


@dataclass(frozen=True)
class Offer:
    """One block request: an address (normalised CIDR) and ingress, egress or both."""

    address: str
    direction: str
    reason: str


@dataclass
class Plan:
    finding_id: str
    finding_type: str
    severity: float
    offers: list[Offer] = field(default_factory=list)
    left_alone: list[tuple[str | None, str]] = field(default_factory=list)  # (address, why)
    note: str = ""  # why the workflow ignores it (an attack sequence, an archived finding…)

    @property
    def source(self) -> str:
        return (SOURCE_PREFIX + _SOURCE_CHARS.sub("-", self.finding_id))[:SOURCE_LIMIT]


def load(text: str) -> dict[str, Any]:
    """A GuardDuty finding event from JSON text; a bare finding (``detail`` alone, as GetFindings returns
    it) gets the EventBridge envelope it would arrive in."""
    from autoblock.logic.guardduty import DETAIL_TYPE, SOURCE

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise FindingFileError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise FindingFileError("not a JSON object: a GuardDuty finding event, or the finding alone")
    if "detail-type" in value or "source" in value:
        return value
    if "Findings" in value or "SchemaVersion" in value:  # `aws guardduty get-findings` spells keys in PascalCase
        value = _camel(value)
    if "findings" in value:
        found = value["findings"]
        if not isinstance(found, list) or len(found) != 1:
            count = len(found) if isinstance(found, list) else "no list of"
            raise FindingFileError(f"{count} findings: give one (aws guardduty get-findings --finding-ids ID)")
        value = found[0] if isinstance(found[0], dict) else {}
    if "type" in value and "service" in value:
        return {
            "version": "0",
            "id": str(value.get("id", "")),
            "detail-type": DETAIL_TYPE,
            "source": SOURCE,
            "account": str(value.get("accountId", "")),
            "time": str(value.get("updatedAt", "")),
            "region": str(value.get("region", "")),
            "resources": [],
            "detail": value,
        }
    raise FindingFileError(
        "neither a GuardDuty finding event (source, detail-type, detail) nor a finding (type, service)"
    )


def plan(event: dict[str, Any], direction: str | None = None) -> Plan:
    """What to offer; ``direction`` (ingress, egress or both) overrides the finding's. Raise FindingFileError."""
    from autoblock.logic.addresses import Policy
    from autoblock.logic.guardduty import MalformedFinding, extract, is_attack_sequence, parse, sequence_targets

    policy = Policy()
    try:
        extraction = extract(event, policy)
        if extraction.finding_id == "":
            raise FindingFileError(f"not a GuardDuty finding: {extraction.ignored}")
        finding = parse(event)
    except MalformedFinding as exc:
        raise FindingFileError(str(exc)) from None
    result = Plan(extraction.finding_id, extraction.finding_type, extraction.severity)
    if is_attack_sequence(finding):
        targets, skipped = sequence_targets(finding, policy)
        result.note = "an attack sequence: the workflow never blocks one on its own"
    elif extraction.ignored:
        targets, skipped = [], []
        result.note = f"the workflow ignores it: {extraction.ignored}"
    else:
        targets, skipped = extraction.targets, extraction.skipped
    directions: dict[str, set[str]] = {}
    reasons: dict[str, str] = {}
    for target in targets:
        directions.setdefault(target.address, set()).add(target.direction)
        reasons.setdefault(target.address, target.reason)
    for address, found in directions.items():
        way = direction or (found.pop() if len(found) == 1 else "both")
        result.offers.append(Offer(address, way, _printable(reasons[address])[:REASON_LIMIT]))
    result.left_alone = [(s.address, s.reason) for s in skipped]
    return result


def _camel(value: Any) -> Any:
    """Every key with its first letter in lowercase (``IpAddressV4`` → ``ipAddressV4``), as EventBridge sends them."""
    if isinstance(value, dict):
        return {(k[:1].lower() + k[1:] if isinstance(k, str) else k): _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)
