"""A block's life, from the request to its release: the one object the handlers call.

States: ``pending`` → ``active`` → ``releasing`` → one of ``expired``, ``unblocked``, ``evicted``,
``rejected``, ``failed``. A pending block can also go straight to ``releasing``; a dry run is born
``dry-run``. Every transition is a conditional write on the block item that carries its history
event in the same request, so concurrent actors agree on who does what.

The parts, each in its own module:

* ``registration``: a request becomes a new pending block holding its rule numbers, an extension,
  a refusal or a dry run;
* ``reservation``: which rule numbers a new block takes; the Reserve task that evicts;
* ``enforcement``: the deny entries, created and removed;
* ``release``: expiry, unblock, eviction, compensation.

``open`` is where both the API and a GuardDuty finding start a block: register it, then hand it to
its workflow (or, if the workflow cannot start, end it at once so nothing is left behind).
This module holds no boto3 import: it is given the table, the NACLs and the workflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from autoblock.errors import AutoblockError, BlockNotFound
from autoblock.logic.context import Context, count
from autoblock.logic.enforcement import Enforcement
from autoblock.logic.ports import BlockStore, NaclGateway, WafGateway, WorkflowGateway
from autoblock.logic.registration import Outcome, Registration
from autoblock.logic.release import Releases
from autoblock.logic.reservation import Reservations, SlotView
from autoblock.logic.slots import FOREIGN, split_slot_key, targets
from autoblock.models import (
    Block,
    BlockRequest,
    HistoryEvent,
    Settings,
    SlotUsage,
    Status,
    Target,
    Ticket,
    WafSetUsage,
)

UNBLOCKABLE = frozenset({"pending", "active"})


@dataclass(frozen=True)
class Opened:
    """What became of a request: the block as it now is, and what happened to it."""

    block: Block
    outcome: Outcome
    evicted: list[str] = field(default_factory=list)
    others: list[Block] = field(default_factory=list)  # live blocks of other accounts/Regions it extended


class Lifecycle:
    def __init__(
        self,
        settings: Settings,
        store: BlockStore,
        nacls: NaclGateway,
        workflow: WorkflowGateway,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        waf: WafGateway | None = None,
    ) -> None:
        self.ctx = Context(settings, store, nacls, workflow, now, sleep, waf)
        self.view = SlotView(lambda key: store.slots(key))
        self.reservations = Reservations(self.ctx, self.view, self.release)
        self.registration = Registration(self.ctx, self.reservations)
        self.enforcement = Enforcement(self.ctx, self.reservations)
        self.releases = Releases(self.ctx, self.enforcement, self.view)

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def store(self) -> BlockStore:
        return self.ctx.store

    @property
    def nacls(self) -> NaclGateway:
        return self.ctx.nacls

    # -- the entry point of every block -----------------------------------------------------------

    def open(
        self,
        request: BlockRequest,
        source: str,
        nacl_ids: Sequence[str] | None = None,
        targets: Sequence[Target] | None = None,
    ) -> Opened:
        """Block the request's address: a new block handed to its workflow, an extension of the
        address's live block, or a dry run. Raises the domain error of a refusal. ``nacl_ids``:
        where (a finding's account and Region); else the configured NACLs the request selects.
        ``targets``: the default when the request names none (GuardDutyTargets for a finding)."""
        registered = self.registration.register(request, source, nacl_ids, targets)
        if registered.created:
            try:
                self.ctx.workflow.start(Ticket.of(registered.block, reserved=registered.reserved))
            except AutoblockError:
                self.release(registered.block.id, "failed", "the workflow could not be started", frozenset({"pending"}))
                raise
        return Opened(registered.block, registered.outcome, others=registered.others)

    def unblock(self, block_id: str, source: str) -> Block:
        """Remove the block's entries now and stop its waiting execution."""
        block = self.release(block_id, "unblocked", f"unblocked by {source}", UNBLOCKABLE, source=source)
        if block.state == "unblocked":
            count("BlocksUnblocked")
            self.ctx.workflow.stop(block.id, "autoblock.Unblocked", "unblocked through the API")
        return block

    # -- the workflow's tasks ---------------------------------------------------------------------

    def reserve(self, ticket: Ticket) -> Ticket:
        """The Reserve task: numbers for the (NACL, direction) pairs the new block could not take."""
        block = self.get(ticket.block_id)
        if block.state != "pending":
            return Ticket.of(block)
        return Ticket.of(self.reservations.reserve(block), reserved=True)

    def apply(self, ticket: Ticket) -> Ticket:
        return self.enforcement.apply(ticket)

    def expire(self, block_id: str, due: int | None = None) -> Block:
        return self.releases.expire(block_id, due)

    def compensate(self, block_id: str, error: str, cause: str) -> Block:
        return self.releases.compensate(block_id, error, cause)

    def release(
        self, block_id: str, final_state: str, reason: str, from_states: frozenset[str], source: str | None = None
    ) -> Block:
        return self.releases.release(block_id, final_state, reason, from_states, source)

    def resume_release(self, block: Block) -> Block:
        return self.releases.resume_release(block)

    def record(self, *events: HistoryEvent) -> None:
        self.ctx.record(*events)

    # -- reads ------------------------------------------------------------------------------------

    def get(self, block_id: str) -> Block:
        block = self.ctx.store.get(block_id)
        if block is None:
            raise BlockNotFound(f"no block with id {block_id}")
        return block

    def live(self) -> list[Block]:
        return self.ctx.store.live()

    def history(self, block: Block) -> list[HistoryEvent]:
        return self.ctx.store.history(block.cidr, since=block.created_at, block_id=block.id)

    def address_history(self, cidr: str) -> list[HistoryEvent]:
        return self.ctx.store.history(cidr)

    def status(self) -> Status:
        """The configuration, the rule numbers in use (one Query per NACL and direction) and each
        WAF IP set's fill (one BatchGetItem)."""
        settings = self.ctx.settings
        slots = []
        for key in sorted(targets(settings.nacl_refs, "both"), key=split_slot_key):
            ref, direction = split_slot_key(key)
            account, region, nacl_id = settings.place(ref)
            holders = [h for n, h in self.view.taken(key, fresh=True).items() if n in settings.rule_range]
            foreign = sum(1 for h in holders if h == FOREIGN)
            used = len(holders) - foreign  # our blocks' (and a sweep's short-lived claims)
            slots.append(
                SlotUsage(
                    nacl_id=nacl_id,
                    direction=direction,
                    account=account,
                    region=region,
                    used=used,
                    foreign=foreign,
                    free=settings.rule_limit - used - foreign,
                    limit=settings.rule_limit,
                )
            )
        fill = self.ctx.waf.summaries() if self.ctx.waf is not None else {}
        return Status(
            rule_number_start=settings.rule_number_start,
            rule_limit=settings.rule_limit,
            when_full=settings.when_full,
            dry_run=settings.dry_run,
            active_blocks=len(self.ctx.store.live()),
            slots=slots,
            waf_scope=settings.waf_scope,
            waf_sets=[
                WafSetUsage(name=s.name, family=s.family, used=fill[s.name].count if s.name in fill else 0)
                for s in settings.waf_sets
            ],
        )
