"""A block's life: register (or extend), reserve rule numbers, apply entries, expire, release.

States: ``pending`` → ``active`` → ``releasing`` → one of ``expired``, ``unblocked``, ``evicted``,
``rejected``, ``failed``. A pending block can also go straight to ``releasing``. Every transition is
a conditional write on the block item, so concurrent actors (the workflow, the API, an eviction)
agree on who does what: only the actor that moved a block to ``releasing`` removes its entries.

A dry-run block is born in its final state ``dry-run``: it runs no workflow (there is nothing to
wait for or release, and no NACL is written), holds no lock and no rule number, and records what
would have happened. Every transition writes its history event in the same transaction.

This module holds no boto3 import: it is given the table, the NACL gateway and the clock.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from autoblock.errors import (
    BlockConflict,
    BlockNotFound,
    CapacityExceeded,
    EntryExists,
    InvalidDuration,
    SlotConflict,
    Unchanged,
)
from autoblock.logic import clock
from autoblock.logic.addresses import Network, blockable
from autoblock.logic.escalation import DAY_SECONDS, Escalation, escalate
from autoblock.logic.slots import FOREIGN, split_slot_key, targets
from autoblock.models import Block, BlockRequest, EventKind, HistoryEvent, Settings, SlotUsage, Status

logger = Logger(child=True)

REGISTER_ATTEMPTS = 8
RESERVE_ATTEMPTS_PER_SLOT = 50
EXPIRY_SLACK_SECONDS = 2


class Table(Protocol):  # what lifecycle needs of dal.table.BlockTable
    def get(self, block_id: str) -> Block | None: ...
    def get_many(self, block_ids: list[str]) -> list[Block]: ...
    def create(self, block: Block, history: Sequence[HistoryEvent] = ()) -> bool: ...
    def record_dry_run(self, block: Block, history: Sequence[HistoryEvent]) -> None: ...
    def lock_holder(self, cidr: str) -> str | None: ...
    def drop_lock(self, cidr: str, block_id: str) -> None: ...
    def extend(self, block_id: str, expires_at: int, history: HistoryEvent | None = None) -> Block: ...
    def transition(
        self,
        block_id: str,
        from_states: frozenset[str],
        to_state: str,
        now: int,
        ending: tuple[str, str, str | None] | None = None,
        history: HistoryEvent | None = None,
    ) -> Block: ...
    def begin_release_if_due(self, block_id: str, now: int) -> Block: ...
    def finish(
        self, block: Block, final_state: str, reason: str, now: int, history: HistoryEvent | None = None
    ) -> Block: ...
    def add_history(self, *events: HistoryEvent) -> None: ...
    def history(self, cidr: str, since: float | None = None, block_id: str | None = None) -> list[HistoryEvent]: ...
    def live(self) -> list[Block]: ...
    def slots(self, key: str) -> dict[int, str]: ...
    def take_slot(self, block: Block, key: str, number: int, now: int) -> bool: ...
    def free_slot(self, key: str, number: int, block_id: str) -> bool: ...
    def quarantine_slot(self, block: Block, key: str, number: int, found: str) -> None: ...


class EntryLike(Protocol):  # what lifecycle needs of dal.nacl.Entry
    nacl_id: str
    rule_number: int
    egress: bool
    action: str
    protocol: str
    cidr: str

    def is_deny_of(self, cidr: str) -> bool: ...


class NaclGateway(Protocol):  # what lifecycle needs of dal.nacl.Nacls
    def entries(self, nacl_ids: list[str]) -> dict[str, list[EntryLike]]: ...
    def deny(self, nacl_id: str, rule_number: int, egress: bool, cidr: str, family: int) -> None: ...
    def delete(self, entry: EntryLike) -> None: ...


@dataclass(frozen=True)
class Registered:
    block: Block
    created: bool  # False: an existing live block of the address was extended (or already later)


class Lifecycle:
    def __init__(
        self,
        settings: Settings,
        table: Table,
        nacls: NaclGateway,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.table = table
        self.nacls = nacls
        self.now = now
        self.sleep = sleep

    # -- register -----------------------------------------------------------------------------

    def duration(self, requested: int | None) -> int:
        duration = self.settings.default_duration_seconds if requested is None else requested
        if not 0 < duration <= self.settings.max_duration_seconds:
            raise InvalidDuration(
                f"duration must be between 1 and {self.settings.max_duration_seconds} seconds "
                f"(MaxDurationSeconds), not {duration}"
            )
        return duration

    def register(self, request: BlockRequest, source: str) -> Registered:
        """Create a pending block for the address, or extend its live block: one block per address.
        A dry run (the request's or the stack's DryRun) only records what would happen."""
        network: Network = blockable(request.ip, self.settings.policy)
        cidr = network.compressed
        duration = self.duration(request.duration)
        if request.dry_run or self.settings.dry_run:
            return self._dry_run(request, network, duration, source)
        for attempt in range(REGISTER_ATTEMPTS):
            holder = self.table.lock_holder(cidr)
            if holder is None:
                now = self.now()
                escalation = self._escalation(cidr, duration, now)
                expires_at = clock.expiry(now, escalation.duration if escalation else duration)
                block = self._new_block(request, network, source, now, expires_at, state="pending")
                if self.table.create(block, self._first_events(block, request, duration, escalation, now)):
                    logger.info("block registered", extra={"block_id": block.id, "cidr": cidr})
                    if escalation is not None:
                        with single_metric(name="BlocksEscalated", unit=MetricUnit.Count, value=1):
                            pass
                    return Registered(block, created=True)
                continue  # another request locked the address first: look again
            existing = self.table.get(holder)
            if existing is None or not existing.live:
                self.table.drop_lock(cidr, holder)  # left by a release that died half-way
                continue
            if existing.direction != request.direction:
                raise self._refused(
                    BlockConflict(
                        f"{cidr} is already blocked ({existing.direction}, block {existing.id}); "
                        f"unblock it before blocking it {request.direction}"
                    ),
                    cidr,
                    source,
                )
            if existing.state == "releasing":
                self.sleep(0.25 * (attempt + 1))  # its release takes a few calls; then block anew
                continue
            expires_at = clock.expiry(self.now(), duration)
            extended = self._event(existing, "extended", source, request.reason or "", duration, expires_at)
            try:
                block = self.table.extend(existing.id, expires_at, extended)
                logger.info("block extended", extra={"block_id": block.id, "expires_at": block.expires_at})
                return Registered(block, created=False)
            except Unchanged as unchanged:
                current = unchanged.current
                if current is not None and current.state in ("pending", "active"):
                    return Registered(current, created=False)  # it already ends later
        raise self._refused(
            BlockConflict(f"the previous block of {cidr} is still being released; retry in a few seconds"),
            cidr,
            source,
        )

    def _escalation(self, cidr: str, duration: int, now: float) -> Escalation | None:
        """Longer for a repeat offender: its blocks applied within EscalationWindowDays, from its history."""
        window = self.settings.escalation_window_days
        if self.settings.escalation_factor <= 1 or window < 1:
            return None
        since = now - window * DAY_SECONDS
        previous = {e.block_id for e in self.table.history(cidr, since=since) if e.event == "applied"}
        return escalate(
            duration, len(previous), self.settings.escalation_factor, window, self.settings.max_duration_seconds
        )

    def _first_events(
        self, block: Block, request: BlockRequest, duration: int, escalation: Escalation | None, now: float
    ) -> list[HistoryEvent]:
        requested = self._event(block, "requested", block.source, request.reason or "", duration, None, now)
        if escalation is None:
            requested.expires_at = block.expires_at
            return [requested]
        escalated = self._event(
            block, "escalated", block.source, escalation.reason, escalation.duration, block.expires_at, now
        )
        return [requested, escalated]

    def _new_block(
        self, request: BlockRequest, network: Network, source: str, now: float, expires_at: int, **rest: Any
    ) -> Block:
        return Block(
            id=uuid.uuid4().hex,
            cidr=network.compressed,
            family=network.version,
            direction=request.direction,
            nacl_ids=list(self.settings.nacl_ids),
            reason=request.reason or "",
            source=source,
            created_at=int(now),
            state_since=int(now),
            expires_at=expires_at,
            **rest,
        )

    def _dry_run(self, request: BlockRequest, network: Network, duration: int, source: str) -> Registered:
        """Everything a block does but the NACL write: the checks, the escalation, the rule numbers
        it would take; recorded as a ``dry-run`` block and its events, holding nothing afterwards."""
        now = self.now()
        cidr = network.compressed
        holder = self.table.lock_holder(cidr)
        existing = self.table.get(holder) if holder else None
        escalation = None
        if existing is not None and existing.live and existing.direction == request.direction:
            final = duration
            would = f"would extend block {existing.id} to {clock.iso_z(max(existing.expires_at, now + duration))}"
        elif existing is not None and existing.live:
            final = duration
            would = f"would be refused: {cidr} is already blocked {existing.direction} (block {existing.id})"
        else:
            escalation = self._escalation(cidr, duration, now)
            final = escalation.duration if escalation else duration
            places = []
            for key in targets(self.settings.nacl_ids, request.direction):
                nacl_id, direction = split_slot_key(key)
                number = self.settings.rule_range.first_free(self.table.slots(key))
                places.append(
                    f"{nacl_id} {direction} rule {number}"
                    if number is not None
                    else f"{nacl_id} {direction}: full (WhenFull={self.settings.when_full})"
                )
            would = f"would deny {cidr} for {final} s in {', '.join(places)}"
        why = "dry_run in the request" if request.dry_run else "DryRun=true"
        expires_at = clock.expiry(now, final)
        block = self._new_block(
            request,
            network,
            source,
            now,
            expires_at,
            state="dry-run",
            dry_run=True,
            ended_at=int(now),
            end_reason=f"{would} ({why}); nothing was written to any NACL",
        )
        events = self._first_events(block, request, duration, escalation, now)
        events.append(self._event(block, "dry-run", source, block.end_reason or "", final, expires_at, now))
        self.table.record_dry_run(block, events)
        logger.info("dry run recorded", extra={"block_id": block.id, "cidr": cidr})
        with single_metric(name="BlocksDryRun", unit=MetricUnit.Count, value=1):
            pass
        if escalation is not None:
            with single_metric(name="BlocksEscalated", unit=MetricUnit.Count, value=1):
                pass
        return Registered(block, created=True)

    # -- history --------------------------------------------------------------------------------

    def _event(
        self,
        block: Block,
        kind: str,
        source: str,
        reason: str,
        duration: int | None = None,
        expires_at: int | None = None,
        at: float | None = None,
    ) -> HistoryEvent:
        return HistoryEvent(
            at=self.now() if at is None else at,
            block_id=block.id,
            cidr=block.cidr,
            event=cast(EventKind, kind),
            source=source,
            reason=reason,
            duration=duration,
            expires_at=expires_at,
        )

    def record(self, *events: HistoryEvent) -> None:
        """Write events that go with no transition. A failure never stops what they record: it is
        logged and counted (metric HistoryWriteFailures)."""
        try:
            self.table.add_history(*events)
        except Exception:  # the block or the repair itself already happened
            logger.exception("history not written", extra={"events": [e.event for e in events]})
            with single_metric(name="HistoryWriteFailures", unit=MetricUnit.Count, value=len(events)):
                pass

    def _refused(self, error: BlockConflict, cidr: str, source: str) -> BlockConflict:
        """A well-formed request the lifecycle refuses gets a ``rejected`` event (with no block id:
        it got no block). Requests refused at the edge (auth, shape, policy) write nothing."""
        self.record(
            HistoryEvent(at=self.now(), block_id="", cidr=cidr, event="rejected", source=source, reason=str(error))
        )
        return error

    def history(self, block: Block) -> list[HistoryEvent]:
        return self.table.history(block.cidr, since=block.created_at, block_id=block.id)

    def address_history(self, cidr: str) -> list[HistoryEvent]:
        return self.table.history(cidr)

    # -- reserve --------------------------------------------------------------------------------

    def reserve(self, block_id: str) -> Block:
        """Hold one rule number per (NACL, direction) for a pending block."""
        block = self._get(block_id)
        for key in targets(block.nacl_ids, block.direction):
            if block.state != "pending":
                return block
            if key not in block.rules:
                block = self._reserve_one(block, key)
        return block

    def _reserve_one(self, block: Block, key: str) -> Block:
        rule_range = self.settings.rule_range
        for _ in range(RESERVE_ATTEMPTS_PER_SLOT):
            taken = self.table.slots(key)
            number = rule_range.first_free(taken)
            if number is None:
                self._make_room(block, key, taken)
                continue
            try:
                if self.table.take_slot(block, key, number, int(self.now())):
                    block.rules[key] = number
                    return block
            except Unchanged as unchanged:
                current = unchanged.current
                if current is None:
                    raise BlockNotFound(f"block {block.id} disappeared") from None
                return current  # unblocked meanwhile, or the slot was taken by a retry of this task
        raise CapacityExceeded(f"could not reserve a rule number in {key} after {RESERVE_ATTEMPTS_PER_SLOT} attempts")

    def _make_room(self, block: Block, key: str, taken: dict[int, str]) -> None:
        nacl_id, direction = split_slot_key(key)
        capacity = (
            f"{nacl_id} {direction} holds {len(taken)} of {self.settings.rule_limit} blocks "
            f"(rules {self.settings.rule_range.start}-{self.settings.rule_range.end}, RuleLimit)"
        )
        if self.settings.when_full == "reject":
            raise CapacityExceeded(f"no free rule number: {capacity}; WhenFull=reject")
        holders = [
            b for b in self.table.get_many(sorted(set(taken.values()))) if b.state == "active" and b.id != block.id
        ]
        if not holders:
            raise CapacityExceeded(f"no free rule number and no active block to evict: {capacity}")
        victim = min(holders, key=lambda b: (b.expires_at, b.created_at))
        logger.warning("evicting the block that ends first", extra={"block_id": victim.id, "for_block": block.id})
        with single_metric(name="BlocksEvicted", unit=MetricUnit.Count, value=1):
            pass
        self.release(
            victim.id,
            "evicted",
            f"evicted early for block {block.id} ({block.cidr}): {capacity}; WhenFull=evict-soonest-expiring",
            from_states=frozenset({"active"}),
            source=block.source,
        )

    # -- apply ----------------------------------------------------------------------------------

    def apply(self, block_id: str) -> Block:
        """Create the deny entries of a pending block and make it active."""
        block = self._get(block_id)
        if block.state != "pending":
            return block
        for key in sorted(block.rules):
            for _ in range(self.settings.rule_limit):
                number = block.rules[key]
                nacl_id, direction = split_slot_key(key)
                try:
                    self.nacls.deny(nacl_id, number, direction == "egress", block.cidr, block.family)
                    break
                except EntryExists as exists:
                    if exists.entry is not None and exists.entry.is_deny_of(block.cidr):
                        break  # ours, from an earlier attempt of this task
                    # A rule we did not write sits at our number: leave it alone, move elsewhere.
                    logger.warning("foreign entry in the managed range", extra={"slot": key, "rule_number": number})
                    self.table.quarantine_slot(block, key, number, repr(exists.entry))
                    del block.rules[key]
                    block = self._reserve_one(block, key)
                    if block.state != "pending" or key not in block.rules:
                        return block
            else:
                raise SlotConflict(f"every rule number tried in {key} holds an entry autoblock does not own")
        rules = ", ".join(f"{k.replace('|', ' ')} rule {n}" for k, n in sorted(block.rules.items()))
        applied = self._event(block, "applied", block.source, f"denied in {rules}", None, block.expires_at)
        try:
            return self.table.transition(block.id, frozenset({"pending"}), "active", int(self.now()), history=applied)
        except Unchanged as unchanged:
            # Unblocked while we were applying: whoever moved it to releasing may have looked at
            # the NACL before our entries existed, so remove what we created ourselves.
            self._remove_entries(block)
            return unchanged.current or block

    # -- expire, release ------------------------------------------------------------------------

    def expire(self, block_id: str) -> Block:
        """After the Wait: release the block if it is due; an extended block is returned active."""
        for _ in range(2):
            now = self.now()
            try:
                block = self.table.begin_release_if_due(block_id, int(now))
            except Unchanged as unchanged:
                current = unchanged.current
                if current is None:
                    raise BlockNotFound(f"block {block_id} disappeared") from None
                early = current.expires_at - now
                if current.state == "releasing" and current.ending_state == "expired":
                    return self.resume_release(current)  # a retry of this task after a partial release
                if current.state == "active" and 0 < early <= EXPIRY_SLACK_SECONDS:
                    # The Wait ended within a second of the expiry (clocks differ by that much):
                    # sleeping the rest here beats another Wait/Expire round trip.
                    self.sleep(early)
                    continue
                return current  # extended (active, later expiry) or already released
            return self._complete_release(block, "expired", "expired")
        return self._get(block_id)

    def release(
        self,
        block_id: str,
        final_state: str,
        reason: str,
        from_states: frozenset[str],
        source: str | None = None,
    ) -> Block:
        """Take a block out of every NACL and give its rule numbers back. Idempotent. ``source``
        (who ends it) goes into the final event; the block's own source when None."""
        try:
            block = self.table.transition(
                block_id, from_states, "releasing", int(self.now()), ending=(final_state, reason, source)
            )
        except Unchanged as unchanged:
            if unchanged.current is None:
                raise BlockNotFound(f"no block with id {block_id}") from None
            return unchanged.current  # someone else releases it, or it has ended
        return self._complete_release(block, final_state, reason)

    def resume_release(self, block: Block) -> Block:
        """Finish a release that stopped half-way (its actor died): entries, slots, lock, final state."""
        return self._complete_release(block, block.ending_state or "failed", block.ending_reason or "release resumed")

    def _complete_release(self, block: Block, final_state: str, reason: str) -> Block:
        self._remove_entries(block)
        for key, number in block.rules.items():
            self.table.free_slot(key, number, block.id)
        self.table.drop_lock(block.cidr, block.id)
        ended = self._event(block, final_state, block.ending_source or block.source, reason, None, block.expires_at)
        try:
            done = self.table.finish(block, final_state, reason, int(self.now()), history=ended)
        except Unchanged as unchanged:
            return unchanged.current or block  # a concurrent release of the same block finished first
        logger.info("block released", extra={"block_id": block.id, "state": final_state})
        return done

    def _remove_entries(self, block: Block) -> None:
        if not block.rules:
            return
        entries = self.nacls.entries(sorted({split_slot_key(k)[0] for k in block.rules}))
        for key, number in block.rules.items():
            nacl_id, direction = split_slot_key(key)
            egress = direction == "egress"
            for entry in entries.get(nacl_id, []):
                if entry.rule_number == number and entry.egress == egress and entry.is_deny_of(block.cidr):
                    self.nacls.delete(entry)

    # -- reads ----------------------------------------------------------------------------------

    def _get(self, block_id: str) -> Block:
        block = self.table.get(block_id)
        if block is None:
            raise BlockNotFound(f"no block with id {block_id}")
        return block

    def get(self, block_id: str) -> Block:
        return self._get(block_id)

    def live(self) -> list[Block]:
        return self.table.live()

    def status(self) -> Status:
        """The configuration and the rule numbers in use: one Query per (NACL, direction)."""
        slots = []
        limit = self.settings.rule_limit
        for key in sorted(targets(self.settings.nacl_ids, "both"), key=split_slot_key):
            nacl_id, direction = split_slot_key(key)
            holders = [h for n, h in self.table.slots(key).items() if n in self.settings.rule_range]
            foreign = sum(1 for h in holders if h == FOREIGN)
            used = len(holders) - foreign  # our blocks' (and a sweep's short-lived claims)
            slots.append(
                SlotUsage(
                    nacl_id=nacl_id,
                    direction=direction,
                    used=used,
                    foreign=foreign,
                    free=limit - used - foreign,
                    limit=limit,
                )
            )
        return Status(
            rule_number_start=self.settings.rule_number_start,
            rule_limit=limit,
            when_full=self.settings.when_full,
            dry_run=self.settings.dry_run,
            active_blocks=len(self.table.live()),
            slots=slots,
        )
