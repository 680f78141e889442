"""The sweeper: once a minute, make the managed range of every NACL agree with the table again.

It reads the NACLs first and the table after, so that every entry it sees was written after its
rule number was taken in the table: an entry whose number no live block holds is truly an orphan.
It reads live blocks from the sparse ``live`` index and the slots of each (NACL, direction), so
its cost grows with what the NACLs hold (at most RuleLimit per NACL and direction), never with
history, nor with the active blocks held in WAF only: of those it reads only the overdue ones.

Every repair is a conditional write, so two sweeps at once, or a sweep during an execution, never
remove twice or remove what is being applied:

* ``expired_late``: an active block past its expiry (plus grace) whose execution did not release it.
* ``release_resumed``: a block stuck in ``releasing`` (its releaser died) is finished.
* ``reservation_released``: a pending block whose execution is no longer running.
* ``reapplied``: an active block whose entry vanished gets it back.
* ``moved``: an active block whose number holds an entry we did not write moves to a free number;
  the old number is quarantined (held by ``foreign``) and the foreign entry left alone.
* ``orphan_removed``: a deny-all entry in the range that no live block owns. The sweeper first
  claims the number in the table, so no block can take it meanwhile, then deletes, then frees it.
* ``foreign_quarantined``: an entry in the range that autoblock could not have written (an allow
  rule, a port-specific rule): its number is held by ``foreign`` so no block tries it; it is never touched.
* ``slot_freed``: a number held by a block that ended or vanished, or quarantined for a foreign
  entry that is gone.
* ``waf_removed`` / ``waf_restored``: one of the stack's WAF IP sets held an address no live block
  wants there (removed), or lacked one that a live block holds there (restored). A set whose
  contents match its last update costs one GetIPSet per sweep; only a set that differs has its
  members read from the table (``dal.waf``). No other IP set is ever read or touched.
* ``unreachable`` (organization mode): a member account and Region whose NACLs could not be read
  (its member role is missing or refuses). Its NACLs and rule numbers are left exactly as they are
  until it answers again; the other accounts are swept as usual.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger

from autoblock.errors import MemberUnreachable
from autoblock.logic import refs
from autoblock.logic.lifecycle import Lifecycle
from autoblock.logic.ports import BlockStore
from autoblock.logic.slots import FOREIGN, by_slot_location, split_slot_key, targets
from autoblock.models import Block, Entry, EntryExists, HistoryEvent

logger = Logger(service="autoblock", child=True)

SWEEPER = "sweeper"
CLAIM_STALE_SECONDS = 120  # a sweeper's claim older than this belongs to a sweep that died


@dataclass(frozen=True)
class Repair:
    kind: str
    nacl_id: str | None = None
    direction: str | None = None
    rule_number: int | None = None
    block_id: str | None = None
    cidr: str | None = None
    detail: str = ""


@dataclass
class SweepReport:
    repairs: list[Repair] = field(default_factory=list)
    live_blocks: int = 0
    slots_seen: int = 0
    entries_seen: int = 0
    slots_in_use: dict[str, int] = field(default_factory=dict)  # "<nacl>|<direction>" → numbers held
    waf_sets: dict[str, int] = field(default_factory=dict)  # WAF IP set → addresses it is to hold

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for repair in self.repairs:
            counts[repair.kind] = counts.get(repair.kind, 0) + 1
        return counts


class Sweeper:
    def __init__(
        self,
        lifecycle: Lifecycle,
        table: BlockStore,
        execution_status: Callable[[str], str | None],
        now: Callable[[], float] = time.time,
    ) -> None:
        self.lifecycle = lifecycle
        self.settings = lifecycle.settings
        self.table = table
        self.nacls = lifecycle.nacls
        self.execution_status = execution_status
        self.now = now

    def sweep(self) -> SweepReport:
        report = SweepReport()
        configured = list(self.settings.nacl_refs)
        entries = self._entries(configured, report)  # NACLs first, the table after: see the module docstring
        now = int(self.now())
        for block in self.table.due(now, waf=self.lifecycle.ctx.waf is not None):
            self._sweep_block(block, now, report)
        self._sweep_waf(report)

        # After the block repairs above, and after the NACL read: see the module docstring. The
        # blocks that hold rule numbers are all this needs (a WAF-only block holds none).
        live = {b.id: b for b in self.table.due(now, waf=False)}
        owners = {(key, number): b for b in live.values() for key, number in b.rules.items()}
        # Only NACLs whose entries were read: a member that cannot be reached is left as it is.
        keys = targets([ref for ref in configured if ref in entries], "both")
        slots = {key: self.table.slots(key) for key in keys}
        report.live_blocks = len(live)
        report.slots_seen = sum(len(s) for s in slots.values())
        report.slots_in_use = {key: len(held) for key, held in slots.items()}
        unknown = sorted({h for s in slots.values() for h in s.values() if h not in live and _is_block_id(h)})
        ended = {b.id: b for b in self.table.get_many(unknown)} if unknown else {}

        rule_range = self.settings.rule_range
        for key in keys:
            nacl_id, direction = split_slot_key(key)
            egress = direction == "egress"
            here = {
                e.rule_number: e for e in entries.get(nacl_id, []) if e.egress == egress and e.rule_number in rule_range
            }
            report.entries_seen += len(here)
            held = slots[key]
            for number, entry in sorted(here.items()):
                self._sweep_entry(key, number, entry, held.get(number), owners.get((key, number)), now, report)
            for number, holder in sorted(held.items()):
                if number not in here:
                    self._sweep_free_slot(key, number, holder, owners.get((key, number)), ended, report)
        for repair in report.repairs:
            logger.info("sweeper repair", extra={"repair": repair.__dict__})
        self._record(report.repairs)
        return report

    def _sweep_waf(self, report: SweepReport) -> None:
        """Each of the stack's WAF IP sets made to hold exactly the table's members (``dal.waf``)."""
        waf = self.lifecycle.ctx.waf
        if waf is None:
            return
        drifts, fill = waf.reconcile()
        report.waf_sets = dict(fill)
        for drift in drifts:
            report.repairs += [Repair("waf_removed", cidr=a, detail=f"from {drift.ip_set}") for a in drift.removed]
            report.repairs += [Repair("waf_restored", cidr=a, detail=f"to {drift.ip_set}") for a in drift.restored]

    def _entries(self, nacl_ids: list[str], report: SweepReport) -> dict[str, list[Entry]]:
        """The entries of every NACL that can be read, one location at a time: a member account whose
        role is missing or refuses is reported (``unreachable``) and does not stop the others."""
        entries: dict[str, list[Entry]] = {}
        for location, here in sorted(refs.by_location(nacl_ids).items()):
            try:
                entries.update({k: list(v) for k, v in self.nacls.entries(here).items()})
            except MemberUnreachable as exc:
                logger.warning("member account unreachable", extra={"location": location, "reason": str(exc)})
                report.repairs.append(Repair("unreachable", detail=str(exc)))
        return entries

    def _record(self, repairs: list[Repair]) -> None:
        """A ``repaired`` event (source ``sweeper``, the kind in the reason) for each repair of a block."""
        events = [
            HistoryEvent(
                at=self.now(),
                block_id=r.block_id,
                cidr=r.cidr,
                event="repaired",
                source=SWEEPER,
                reason=_describe_repair(r),
            )
            for r in repairs
            if r.block_id and r.cidr and _is_block_id(r.block_id)
        ]
        for i in range(0, len(events), 25):
            self.lifecycle.record(*events[i : i + 25])

    # -- blocks ---------------------------------------------------------------------------------

    def _sweep_block(self, block: Block, now: int, report: SweepReport) -> None:
        overdue = now - self.settings.sweeper_grace_seconds  # the workflow's own work comes first
        if block.state == "active" and block.expires_at <= overdue:
            done = self.lifecycle.expire(block.id)
            if done.state == "expired":
                report.repairs.append(Repair("expired_late", block_id=block.id, cidr=block.cidr))
            return
        if block.state == "releasing" and block.state_since <= overdue:
            self.lifecycle.resume_release(block)
            report.repairs.append(Repair("release_resumed", block_id=block.id, cidr=block.cidr))
            return
        if block.state == "pending" and block.state_since <= overdue:
            status = self.execution_status(block.id)
            if status != "RUNNING":
                reason = f"never applied: its execution is {status or 'missing'}"
                self.lifecycle.release(block.id, "failed", reason, frozenset({"pending"}), source=SWEEPER)
                report.repairs.append(Repair("reservation_released", block_id=block.id, cidr=block.cidr))
            return
        if block.state == "active":
            self._reapply(block, now, report)

    def _reapply(self, block: Block, now: int, report: SweepReport) -> None:
        """Each account and Region on its own: one that cannot be reached (reported once per sweep
        by ``_entries``) is repaired when it answers again."""
        for rules in by_slot_location(block.rules).values():
            with contextlib.suppress(MemberUnreachable):
                self._reapply_entries(block, rules, now, report)

    def _reapply_entries(self, block: Block, rules: dict[str, int], now: int, report: SweepReport) -> None:
        current = self.nacls.entries(sorted({split_slot_key(k)[0] for k in rules}))
        for key, number in sorted(rules.items()):
            nacl_id, direction = split_slot_key(key)
            egress = direction == "egress"
            entry = next((e for e in current.get(nacl_id, []) if e.rule_number == number and e.egress == egress), None)
            if entry is not None and entry.is_deny_of(block.cidr):
                continue
            if entry is not None and _could_be_ours(entry):
                # A deny-all for another address at a number this block holds: no live block can own
                # it (the number is this block's), so it is an orphan; put this block's entry back.
                self.nacls.delete(entry)
                report.repairs.append(Repair("orphan_removed", nacl_id, direction, number, cidr=entry.cidr))
                entry = None
            if entry is None:
                try:
                    self.nacls.deny(nacl_id, number, egress, block.cidr, block.family)
                    report.repairs.append(Repair("reapplied", nacl_id, direction, number, block.id, block.cidr))
                    continue
                except EntryExists as exists:
                    entry = exists.entry
                    if entry is None or entry.is_deny_of(block.cidr):
                        continue  # a concurrent sweep put it back
            self._move(block, key, number, entry, now, report)

    def _move(self, block: Block, key: str, number: int, entry: Entry, now: int, report: SweepReport) -> None:
        nacl_id, direction = split_slot_key(key)
        found = repr(entry)
        logger.warning("foreign entry at a block's rule number", extra={"slot": key, "rule_number": number})
        for _ in range(self.settings.rule_limit):
            free = self.settings.rule_range.first_free(self.table.slots(key))
            if free is None:
                report.repairs.append(
                    Repair("conflict_unresolved", nacl_id, direction, number, block.id, block.cidr, found)
                )
                return
            if self.table.move_slot(block, key, number, free, found, now):
                with contextlib.suppress(EntryExists):  # the next sweep sees what is there and repairs again
                    self.nacls.deny(nacl_id, free, direction == "egress", block.cidr, block.family)
                detail = f"from {number} (held by {found}) to {free}"
                report.repairs.append(Repair("moved", nacl_id, direction, free, block.id, block.cidr, detail))
                return
        report.repairs.append(Repair("conflict_unresolved", nacl_id, direction, number, block.id, block.cidr, found))

    # -- entries and slots ----------------------------------------------------------------------

    def _sweep_entry(
        self,
        key: str,
        number: int,
        entry: Entry,
        holder: str | None,
        owner: Block | None,
        now: int,
        report: SweepReport,
    ) -> None:
        nacl_id, direction = split_slot_key(key)
        if owner is not None and entry.is_deny_of(owner.cidr):
            # A live block's entry (a pending one is being applied right now: hands off).
            if holder != owner.id and self.table.claim_slot(key, number, holder, owner.id, now):
                report.repairs.append(Repair("slot_restored", nacl_id, direction, number, owner.id, owner.cidr))
            return
        if holder == FOREIGN or (holder or "").startswith(SWEEPER):
            return
        if not _could_be_ours(entry):
            if holder is None and self.table.claim_slot(key, number, None, FOREIGN, now):
                report.repairs.append(Repair("foreign_quarantined", nacl_id, direction, number, detail=repr(entry)))
            return
        claimant = f"{SWEEPER}:{now}"
        if not self.table.claim_slot(key, number, holder, claimant, now):
            return  # taken meanwhile: by a block (its entry, then) or by another sweep
        try:
            again = self.nacls.entries([nacl_id]).get(nacl_id, [])
            still = next((e for e in again if e.rule_number == number and e.egress == entry.egress), None)
            if still is not None and _same(still, entry):
                self.nacls.delete(still)
                report.repairs.append(Repair("orphan_removed", nacl_id, direction, number, cidr=entry.cidr))
        finally:
            self.table.free_slot(key, number, claimant)

    def _sweep_free_slot(
        self,
        key: str,
        number: int,
        holder: str,
        owner: Block | None,
        ended: dict[str, Block],
        report: SweepReport,
    ) -> None:
        nacl_id, direction = split_slot_key(key)
        if owner is not None and owner.id == holder:
            return  # its entry is missing: _reapply put it back; a pending one is being applied
        late = ended.get(holder)
        if late is not None and late.live:
            return  # a block created after this sweep read the live ones: its number is its own
        if holder.startswith(SWEEPER):
            taken_at = self.table.slot_taken_at(key, number)
            if taken_at is not None and taken_at > int(self.now()) - CLAIM_STALE_SECONDS:
                return
        if not self.table.free_slot(key, number, holder):
            return  # someone else freed or took it meanwhile
        why = (
            "quarantine lifted: the foreign entry is gone"
            if holder == FOREIGN
            else f"held by {_describe(holder, ended)}"
        )
        report.repairs.append(Repair("slot_freed", nacl_id, direction, number, block_id=holder, detail=why))


def _describe_repair(repair: Repair) -> str:
    where = f" ({repair.nacl_id} {repair.direction} rule {repair.rule_number})" if repair.nacl_id else ""
    return f"{repair.kind}{where}{': ' + repair.detail if repair.detail else ''}"


def _is_block_id(holder: str) -> bool:
    return len(holder) == 32 and all(c in "0123456789abcdef" for c in holder)


def _describe(holder: str, ended: dict[str, Block]) -> str:
    block = ended.get(holder)
    return f"block {holder}, which is {block.state}" if block else f"{holder}, which no longer exists"


def _could_be_ours(entry: Entry) -> bool:
    """autoblock only ever writes deny entries for all protocols."""
    return entry.action == "deny" and entry.protocol == "-1"


def _same(a: Entry, b: Entry) -> bool:
    return (a.action, a.protocol, a.cidr) == (b.action, b.protocol, b.cidr)
