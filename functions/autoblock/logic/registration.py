"""A request becomes a block: a new pending block holding its rule numbers, an extension of the
address's live block, a refusal, or a dry run. One block per address: the address lock decides.

A new block is one read and one write: the address's lock holder and offender record (for the
escalation), then one transaction that creates the block with its lock, its rule numbers (chosen
from the slot view) and its first events. A dry run records what would have happened and holds
nothing.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from autoblock.errors import BlockConflict, CapacityExceeded, InvalidDuration, InvalidRequest, TransientAwsError
from autoblock.logic import clock, refs
from autoblock.logic.addresses import Network, blockable
from autoblock.logic.context import Context, count, logger
from autoblock.logic.escalation import DAY_SECONDS, Escalation, escalate
from autoblock.logic.reservation import Reservations
from autoblock.logic.slots import split_slot_key, targets
from autoblock.models import (
    TARGETS,
    WAF_SET_LIMIT,
    AddressLocked,
    Block,
    BlockRequest,
    HistoryEvent,
    SetFull,
    SlotTaken,
    Target,
    Unchanged,
)

REGISTER_ATTEMPTS = 8  # rounds of "read the lock, then write": each lost race to another request costs one
TRANSACTION_ITEMS = 100  # DynamoDB's limit per TransactWriteItems; numbers beyond it go to the Reserve task
SLOT_RETRIES = 100  # numbers the view thought free but another block had taken meanwhile
CONFLICT_RETRIES = 4  # transactions cancelled by a concurrent one (TransactionConflict)

Outcome = Literal["created", "extended", "dry-run"]


@dataclass(frozen=True)
class Registered:
    block: Block
    outcome: Outcome
    reserved: bool = False  # every (NACL, direction) of a created block holds a rule number
    # Organization mode: the address's live blocks in other accounts and Regions, extended by this
    # request beside ``block`` (which then covers only the accounts and Regions nobody held).
    others: list[Block] = field(default_factory=list)

    @property
    def created(self) -> bool:
        return self.outcome == "created"


class Registration:
    def __init__(self, ctx: Context, reservations: Reservations) -> None:
        self.ctx = ctx
        self.reservations = reservations

    def duration(self, requested: int | None) -> int:
        settings = self.ctx.settings
        duration = settings.default_duration_seconds if requested is None else requested
        if not 0 < duration <= settings.max_duration_seconds:
            raise InvalidDuration(
                f"duration must be between 1 and {settings.max_duration_seconds} seconds "
                f"(MaxDurationSeconds), not {duration}"
            )
        return duration

    def register(
        self,
        request: BlockRequest,
        source: str,
        nacl_ids: Sequence[str] | None = None,
        default_targets: Sequence[Target] | None = None,
    ) -> Registered:
        """Create a pending block for the address, or extend its live block. A dry run (the
        request's or the stack's DryRun) only records what would happen. ``nacl_ids``: where to
        block (a finding's account and Region); else the configured NACLs the request selects.

        Each account and Region has its own address lock (``logic.refs``): a request spanning
        several extends the live block of each location that has one, and creates one block for
        the locations that have none.

        ``targets`` (the request's, else ``default_targets``, else DefaultTargets): a block in WAF
        holds the address lock of the stack's own account and Region, like its NACL entries there."""
        network: Network = blockable(request.ip, self.ctx.settings.policy)
        duration = self.duration(request.duration)
        chosen = self.targets(request, network.version, default_targets)
        if "nacl" not in chosen:
            wanted: list[str] = []
        else:
            wanted = list(nacl_ids) if nacl_ids is not None else self.selected(request)
        waf = "waf" in chosen
        if request.dry_run or self.ctx.settings.dry_run:
            return self._dry_run(request, network, duration, source, wanted, waf)
        cidr = network.compressed
        slot_retries, conflicts = SLOT_RETRIES, CONFLICT_RETRIES
        extended: list[Block] = []
        full_sets: set[str] = set()
        attempt = 0
        while attempt < REGISTER_ATTEMPTS:
            remaining = refs.locations(wanted)
            if waf and refs.HOME not in remaining:
                remaining.append(refs.HOME)
            address = self.ctx.store.address(cidr, remaining)
            if not address.holders:
                try:
                    created = self._create(request, network, source, duration, address.applied, wanted, waf, full_sets)
                except AddressLocked:
                    attempt += 1  # another request locked the address first: look again
                    continue
                except SetFull as full:
                    full_sets.add(full.name)  # filled up since we read its count: take another
                    continue
                except SlotTaken as taken:
                    self.reservations.view.learn(taken.key, taken.number, "?")
                    slot_retries -= 1
                    if slot_retries < 0:
                        raise CapacityExceeded(f"could not reserve a rule number in {taken.key}") from None
                    continue
                except TransientAwsError:
                    conflicts -= 1
                    if conflicts < 0:
                        raise
                    self.ctx.sleep(random.uniform(0, 0.05 * 2 ** (CONFLICT_RETRIES - conflicts)))
                    continue
                return Registered(created.block, "created", created.reserved, others=extended)
            holder = address.holder
            assert holder is not None
            held_at = [loc for loc, h in address.holders.items() if h == holder]
            attempt += 1
            registered = self._extend(holder, request, cidr, duration, source, attempt, held_at)
            if registered is None:
                continue
            extended.append(registered.block)
            wanted = [ref for ref in wanted if refs.location_of(ref) not in held_at]
            waf = waf and refs.HOME not in held_at
            if not wanted and not waf:
                return Registered(extended[0], "extended", others=extended[1:])
        raise self._refused(
            BlockConflict(f"the previous block of {cidr} is still being released; retry in a few seconds"),
            cidr,
            source,
        )

    def targets(self, request: BlockRequest, family: int, default: Sequence[Target] | None) -> list[Target]:
        """Where the request is to be blocked; InvalidRequest (field ``targets``) for a target the
        stack does not have, an address family with no WAF IP set, or WAF asked to block egress
        (WAF sees requests coming in; a block in both directions holds WAF for its ingress half)."""
        settings = self.ctx.settings
        chosen = list(request.targets or default or settings.default_targets)
        if "waf" in chosen and request.direction == "egress":
            if request.targets is not None:
                message = 'WAF inspects requests to your resources and cannot block egress: use targets ["nacl"]'
                raise InvalidRequest(message, [{"field": "targets", "type": "not_supported", "message": message}])
            chosen = ["nacl"]  # a default that names WAF: an egress block still goes in the NACLs
        if "waf" in chosen:
            message = ""
            if self.ctx.waf is None or not settings.waf_sets:
                message = 'this stack has no WAF IP set (WafScope=NONE): use targets ["nacl"]'
            elif not any(s.family == family for s in settings.waf_sets):
                message = f"this stack has no WAF IP set for IPv{family} addresses"
            if message:
                raise InvalidRequest(message, [{"field": "targets", "type": "not_configured", "message": message}])
        return chosen

    def _waf_set(self, family: int, full_sets: set[str]) -> str | None:
        """The fullest of the family's sets that still has room (so sets fill one after another and
        an emptier one stays ready for a burst), None when every one is full."""
        assert self.ctx.waf is not None
        fill = self.ctx.waf.summaries()
        room = [
            (fill[s.name].count if s.name in fill else 0, -i, s.name)
            for i, s in enumerate(self.ctx.settings.waf_sets)
            if s.family == family and s.name not in full_sets
        ]
        room = [r for r in room if r[0] < WAF_SET_LIMIT]
        for _, _, name in room:
            if fill.get(name) is not None and fill[name].count >= WAF_SET_LIMIT:
                full_sets.add(name)
        return max(room)[2] if room else None

    def selected(self, request: BlockRequest) -> list[str]:
        """The configured NACLs in the request's ``accounts`` and ``regions`` (default: all of them);
        InvalidRequest naming the field for an account or Region that has none."""
        settings = self.ctx.settings
        configured = settings.nacl_refs
        places = {ref: settings.place(ref) for ref in configured}
        problems = []
        for name, asked, index in (("accounts", request.accounts, 0), ("regions", request.regions, 1)):
            known = sorted({p[index] for p in places.values()})
            unknown = [a for a in asked or [] if a not in known]
            if unknown:
                problems.append(
                    {
                        "field": name,
                        "type": "not_configured",
                        "message": f"no configured NACL in {', '.join(unknown)} (configured: {', '.join(known)})",
                    }
                )
        if problems:
            raise InvalidRequest("; ".join(f"{p['field']}: {p['message']}" for p in problems), problems)
        chosen = [
            ref
            for ref, (account, region, _) in places.items()
            if (request.accounts is None or account in request.accounts)
            and (request.regions is None or region in request.regions)
        ]
        if not chosen:
            message = "no configured NACL is in both the accounts and the regions asked for"
            raise InvalidRequest(message, [{"field": "regions", "type": "not_configured", "message": message}])
        return chosen

    def _create(
        self,
        request: BlockRequest,
        network: Network,
        source: str,
        duration: int,
        applied: tuple[int, ...],
        nacl_ids: list[str],
        waf: bool = False,
        full_sets: set[str] | None = None,
    ) -> Registered:
        settings = self.ctx.settings
        now = self.ctx.now()
        kept = self._within_window(applied, now)
        escalation = self._escalation(duration, len(kept))
        expires_at = clock.expiry(now, escalation.duration if escalation else duration)
        block = self._new_block(request, network, source, now, expires_at, nacl_ids, state="pending")
        block.targets = [t for t in TARGETS if (nacl_ids if t == "nacl" else waf)]
        events = self._first_events(block, request, duration, escalation, now)
        rules, full = self.reservations.pick(block)
        if full and settings.when_full == "waf":
            # WhenFull=waf: a NACL range is full, so the block goes on in WAF only.
            why = f"no free rule number: {next(iter(full.values()))}; WhenFull=waf: blocked in WAF only"
            block = block.model_copy(update={"nacl_ids": [], "targets": ["waf"]})
            rules, full, waf = {}, {}, True
            events.append(self.ctx.event(block, "rerouted", block.source, why, None, block.expires_at, now))
        elif full and settings.when_full == "reject":
            self._reject(
                block, events, CapacityExceeded(f"no free rule number: {next(iter(full.values()))}; WhenFull=reject")
            )
        if waf:
            block.waf_set = self._waf_set(block.family, full_sets if full_sets is not None else set())
            if block.waf_set is None:
                self._waf_full(block, events)
                block.waf_set = self._waf_set(block.family, full_sets if full_sets is not None else set())
                if block.waf_set is None:
                    raise CapacityExceeded(f"every WAF IP set for IPv{block.family} is full")
        # One transaction holds at most 100 items: the block, its locks, its events, its WAF set's
        # two items and the offender record come first; numbers that do not fit go to the Reserve task.
        room = TRANSACTION_ITEMS - 2 - len(block.locations) - len(events) - (2 if waf else 0)
        if len(rules) > room:
            rules = dict(sorted(rules.items())[:room])
            full = {**full, "transaction": "more NACLs than one transaction holds"}
        block.rules = rules
        self.ctx.store.create(block, events, offender_applied=kept if len(kept) < len(applied) else None)
        for key, number in rules.items():
            self.reservations.view.learn(key, number, block.id)
        logger.info("block registered", extra={"block_id": block.id, "cidr": block.cidr})
        if escalation is not None:
            count("BlocksEscalated")
        return Registered(block, "created", reserved=not full)

    def _extend(
        self,
        holder: str,
        request: BlockRequest,
        cidr: str,
        duration: int,
        source: str,
        attempt: int,
        held_at: Sequence[str] = (refs.HOME,),
    ) -> Registered | None:
        """Extend the live block ``holder``; None when the address must be looked at again."""
        existing = self.ctx.store.get(holder)
        if existing is None or not existing.live:
            for location in held_at:
                self.ctx.store.drop_lock(cidr, holder, location)  # left by a release that died half-way
            return None
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
            self.ctx.sleep(0.25 * attempt)  # its release takes a few calls; then block anew
            return None
        expires_at = clock.expiry(self.ctx.now(), duration)
        if expires_at <= existing.expires_at:
            return Registered(existing, "extended")  # it already ends later: nothing to write
        extended = self.ctx.event(existing, "extended", source, request.reason or "", duration, expires_at)
        try:
            block = self.ctx.store.extend(existing, expires_at, extended)
        except Unchanged as unchanged:
            current = unchanged.current
            if current is not None and current.state in ("pending", "active"):
                return Registered(current, "extended")  # it already ends later
            return None
        if (
            block.waf_set is not None
            and self.ctx.waf is not None
            and self.ctx.waf.may_have_left_out(existing.expires_at)
        ):
            # Extended at or near its old expiry: an update may have left it out of its set (a
            # writer leaves out members that are due by its turn); wait for the one that puts it back.
            self.ctx.waf.flush(block.waf_set)
        logger.info("block extended", extra={"block_id": block.id, "expires_at": block.expires_at})
        count("BlocksExtended")
        return Registered(block, "extended")

    def _waf_full(self, block: Block, events: list[HistoryEvent]) -> None:
        """Every WAF IP set of the block's family holds 10,000 addresses: WhenFull says what now.
        evict-soonest-expiring ends the active WAF block of that family that would end first."""
        sets = [s.name for s in self.ctx.settings.waf_sets if s.family == block.family]
        capacity = f"every WAF IP set for IPv{block.family} ({', '.join(sets)}) holds {WAF_SET_LIMIT:,} addresses"
        if self.ctx.settings.when_full != "evict-soonest-expiring":
            self._reject(block, events, CapacityExceeded(f"{capacity}; WhenFull={self.ctx.settings.when_full}"))
        victims = [
            b
            for b in self.ctx.store.waf_soonest(50)
            if b.state == "active" and b.family == block.family and b.waf_set in sets
        ]
        if not victims:
            self._reject(block, events, CapacityExceeded(f"{capacity} and no active WAF block to evict"))
        victim = victims[0]
        logger.warning("evicting the WAF block that ends first", extra={"block_id": victim.id, "for_block": block.id})
        count("BlocksEvicted")
        self.reservations.evict(
            victim.id,
            f"evicted early for block {block.id} ({block.cidr}): {capacity}; WhenFull=evict-soonest-expiring",
            block.source,
        )
        block.evicted.append({"id": victim.id, "ip": victim.cidr})

    def _reject(self, block: Block, events: list[HistoryEvent], error: CapacityExceeded) -> NoReturn:
        """A new block refused before it held anything: recorded ended, with its events, then raised."""
        now = int(self.ctx.now())
        reason = f"{type(error).__name__}: {error}"
        rejected = block.model_copy(update={"state": "rejected", "ended_at": now, "end_reason": reason})
        events.append(self.ctx.event(rejected, "rejected", block.source, reason, None, block.expires_at))
        self.ctx.store.record_ended(rejected, events)
        count("BlocksRejected", Reason=type(error).__name__)
        raise error

    def _within_window(self, applied: tuple[int, ...], now: float) -> tuple[int, ...]:
        since = now - self.ctx.settings.escalation_window_days * DAY_SECONDS
        return tuple(t for t in applied if t >= since)

    def _escalation(self, duration: int, previous: int) -> Escalation | None:
        """Longer for a repeat offender: its blocks applied within EscalationWindowDays."""
        settings = self.ctx.settings
        return escalate(
            duration,
            previous,
            settings.escalation_factor,
            settings.escalation_window_days,
            settings.max_duration_seconds,
        )

    def _first_events(
        self, block: Block, request: BlockRequest, duration: int, escalation: Escalation | None, now: float
    ) -> list[HistoryEvent]:
        requested = self.ctx.event(block, "requested", block.source, request.reason or "", duration, None, now)
        if escalation is None:
            requested.expires_at = block.expires_at
            return [requested]
        escalated = self.ctx.event(
            block, "escalated", block.source, escalation.reason, escalation.duration, block.expires_at, now
        )
        return [requested, escalated]

    def _new_block(
        self,
        request: BlockRequest,
        network: Network,
        source: str,
        now: float,
        expires_at: int,
        nacl_ids: list[str],
        **rest: Any,
    ) -> Block:
        return Block(
            id=uuid.uuid4().hex,
            cidr=network.compressed,
            family=network.version,
            direction=request.direction,
            nacl_ids=list(nacl_ids),
            reason=request.reason or "",
            source=source,
            created_at=int(now),
            state_since=int(now),
            expires_at=expires_at,
            **rest,
        )

    def _refused(self, error: BlockConflict, cidr: str, source: str) -> BlockConflict:
        """A well-formed request the lifecycle refuses gets a ``rejected`` event (with no block id:
        it got no block). Requests refused at the edge (auth, shape, policy) write nothing."""
        self.ctx.record(
            HistoryEvent(at=self.ctx.now(), block_id="", cidr=cidr, event="rejected", source=source, reason=str(error))
        )
        return error

    def _dry_run(
        self,
        request: BlockRequest,
        network: Network,
        duration: int,
        source: str,
        nacl_ids: list[str],
        waf: bool = False,
    ) -> Registered:
        """Everything a block does but the NACL write: the checks, the escalation, the rule numbers
        it would take; recorded as a ``dry-run`` block and its events, holding nothing afterwards."""
        settings = self.ctx.settings
        now = self.ctx.now()
        cidr = network.compressed
        address = self.ctx.store.address(cidr, refs.locations(nacl_ids) or [refs.HOME])
        existing = self.ctx.store.get(address.holder) if address.holder else None
        escalation = None
        if existing is not None and existing.live and existing.direction == request.direction:
            final = duration
            would = f"would extend block {existing.id} to {clock.iso_z(max(existing.expires_at, now + duration))}"
        elif existing is not None and existing.live:
            final = duration
            would = f"would be refused: {cidr} is already blocked {existing.direction} (block {existing.id})"
        else:
            escalation = self._escalation(duration, len(self._within_window(address.applied, now)))
            final = escalation.duration if escalation else duration
            places = []
            for key in targets(nacl_ids, request.direction):
                nacl_id, direction = split_slot_key(key)
                number = settings.rule_range.first_free(self.reservations.view.taken(key, fresh=True))
                places.append(
                    f"{nacl_id} {direction} rule {number}"
                    if number is not None
                    else f"{nacl_id} {direction}: full (WhenFull={settings.when_full})"
                )
            if waf:
                ip_set = self._waf_set(network.version, set())
                places.append(f"WAF IP set {ip_set}" if ip_set else f"WAF: full (WhenFull={settings.when_full})")
            would = f"would deny {cidr} for {final} s in {', '.join(places)}"
        why = "dry_run in the request" if request.dry_run else "DryRun=true"
        expires_at = clock.expiry(now, final)
        block = self._new_block(
            request,
            network,
            source,
            now,
            expires_at,
            nacl_ids,
            state="dry-run",
            dry_run=True,
            ended_at=int(now),
            end_reason=f"{would} ({why}); nothing was written to any NACL{' or WAF IP set' if waf else ''}",
        )
        events = self._first_events(block, request, duration, escalation, now)
        events.append(self.ctx.event(block, "dry-run", source, block.end_reason or "", final, expires_at, now))
        self.ctx.store.record_ended(block, events)
        logger.info("dry run recorded", extra={"block_id": block.id, "cidr": cidr})
        count("BlocksDryRun")
        if escalation is not None:
            count("BlocksEscalated")
        return Registered(block, "dry-run")
