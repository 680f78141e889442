"""In-memory fakes of the ports in ``autoblock.logic.ports``, so a rule of the lifecycle can be tested
without moto or a sleep.

Each fake does what its adapter in ``autoblock.dal`` does, condition for condition:

* ``MemoryStore`` (``dal.table.BlockTable``): every conditional write and every transaction checks
  all its conditions before it writes anything, and raises what the adapter raises (``Unchanged``
  with the block as it is, ``AddressLocked``, ``SlotTaken``; ``TransactionCanceled`` where the
  adapter lets a cancelled transaction's ``ClientError`` through). It hands out copies, as a table
  does: what a caller changes on a block it read is not in the table until it is written.
* ``MemoryNacls`` (``dal.nacl.Nacls``): entries per NACL with EC2's default rule, ``EntryExists``
  for a taken number, ``NaclQuotaExceeded`` at 20 rules per direction and address family.
* ``RecordingWorkflow`` (``dal.workflow.Workflow``): the tickets started, the executions stopped.
* ``ManualClock``: ``now()`` moves only when a test advances it or the logic sleeps.

Every fake can be told what happens at its next call of a method: ``fail("create", error)`` raises
the error there (once, or ``times`` times); ``before("activate", action)`` runs an action first (a
concurrent actor, at exactly that moment).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from autoblock.errors import MemberUnreachable, NaclQuotaExceeded, TransientAwsError, WorkflowError
from autoblock.logic import refs
from autoblock.logic.lifecycle import Lifecycle, Opened
from autoblock.logic.slots import FOREIGN
from autoblock.logic.sweeper import Sweeper
from autoblock.models import (
    LIVE_STATES,
    WAF_SET_LIMIT,
    Address,
    AddressLocked,
    Block,
    BlockRequest,
    Entry,
    EntryExists,
    HistoryEvent,
    SetFull,
    Settings,
    SlotTaken,
    Ticket,
    Unchanged,
)

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z: any fixed time will do
NACL_QUOTA = 20  # EC2's default: rules per NACL, direction and address family (the default rule aside)
DEFAULT_RULE = 32767


def conflict(what: str) -> TransientAwsError:
    """What ``dal.aws.translated`` raises for a transaction cancelled by a concurrent one."""
    return TransientAwsError(f"TransactWriteItems {what}: TransactionCanceledException (TransactionConflict)")


class TransactionCanceled(Exception):
    """A cancelled transaction the adapter does not translate (its ``ClientError`` reaches the caller)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"TransactWriteItems {what}: TransactionCanceledException (ConditionalCheckFailed)")


class Scripted:
    """What a fake does at its next call(s) of a method, before the call itself."""

    def __init__(self) -> None:
        self._next: dict[str, list[Callable[[], None]]] = {}
        self.calls: dict[str, int] = {}

    def before(self, method: str, action: Callable[[], None], times: int = 1) -> None:
        self._next.setdefault(method, []).extend([action] * times)

    def fail(self, method: str, error: Exception, times: int = 1) -> None:
        def raise_it() -> None:
            raise error

        self.before(method, raise_it, times)

    def _call(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        queued = self._next.get(method)
        if queued:
            queued.pop(0)()


# -- the table ------------------------------------------------------------------------------------


@dataclass
class Slot:
    block_id: str
    cidr: str
    taken_at: int
    found: str | None = None


@dataclass(frozen=True)
class _Stored:
    event: HistoryEvent
    order: tuple[int, str, int, int]  # the sort key's parts: epoch ms, block id, n, then the random tail


def _lock(cidr: str, location: str) -> str:
    return f"{cidr}@{location}" if location else cidr


def _ms(epoch: float) -> int:
    return int(epoch * 1000)


class MemoryStore(Scripted):
    """``BlockTable`` in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: dict[str, Block] = {}
        self.locks: dict[str, str] = {}  # cidr (or "<cidr>@<location>") → the block holding the address
        self.offenders: dict[str, list[int]] = {}  # cidr → when its blocks were applied
        self.slot_items: dict[str, dict[int, Slot]] = {}  # "<nacl>|<direction>" → number → holder
        self.waf_members: dict[str, dict[str, str]] = {}  # WAF IP set name → cidr → block id
        self.waf_limit = WAF_SET_LIMIT
        self._history: list[_Stored] = []

    # -- helpers for the tests (not part of the port) -----------------------------------------------

    def block(self, block_id: str) -> Block:
        return self.blocks[block_id].model_copy(deep=True)

    def events(self, cidr: str) -> list[tuple[str, str]]:
        """(event, block id) of an address, oldest first."""
        return [(e.event, e.block_id) for e in self.history(cidr)]

    def held(self) -> dict[str, dict[int, str]]:
        """Every rule number held, by (NACL, direction)."""
        return {key: {n: s.block_id for n, s in slots.items()} for key, slots in self.slot_items.items() if slots}

    def snapshot(self) -> object:
        """Everything the table holds, to compare before and after a call that should write nothing."""
        blocks = {i: b.model_dump() for i, b in self.blocks.items()}
        return (
            blocks,
            dict(self.locks),
            {c: list(t) for c, t in self.offenders.items()},
            self.held(),
            len(self._history),
        )

    def hold(self, key: str, number: int, holder: str, cidr: str = "", taken_at: int = 0) -> None:
        """Write a slot item by hand (another container's block, a quarantine)."""
        self.slot_items.setdefault(key, {})[number] = Slot(holder, cidr, taken_at)

    # -- reads ------------------------------------------------------------------------------------

    def get(self, block_id: str) -> Block | None:
        self._call("get")
        found = self.blocks.get(block_id)
        return found.model_copy(deep=True) if found else None

    def get_many(self, block_ids: list[str]) -> list[Block]:
        self._call("get_many")
        return [self.blocks[b].model_copy(deep=True) for b in dict.fromkeys(block_ids) if b in self.blocks]

    def address(self, cidr: str, locations: Sequence[str] = (refs.HOME,)) -> Address:
        self._call("address")
        holders = {loc: self.locks[_lock(cidr, loc)] for loc in locations if _lock(cidr, loc) in self.locks}
        return Address(holders=holders, applied=tuple(sorted(self.offenders.get(cidr, []))))

    def live(self) -> list[Block]:
        self._call("live")
        live = [b for b in self.blocks.values() if b.state in LIVE_STATES]
        return [b.model_copy(deep=True) for b in sorted(live, key=lambda b: (b.expires_at, b.id))]

    def due(self, before: int, waf: bool = True) -> list[Block]:
        """As the adapter: every live block but the active WAF-only ones not yet due (or, without
        ``waf``, any active WAF-only one)."""
        self._call("due")
        return [b for b in self.live() if b.rules or b.state != "active" or (waf and b.expires_at < before)]

    def waf_soonest(self, limit: int) -> list[Block]:
        self._call("waf_soonest")
        return [b for b in self.live() if b.state == "active" and not b.rules][:limit]

    # -- a new block ------------------------------------------------------------------------------

    def create(
        self, block: Block, history: Sequence[HistoryEvent], offender_applied: Sequence[int] | None = None
    ) -> None:
        self._call("create")
        rules = sorted(block.rules.items())
        if block.id in self.blocks:
            raise TransactionCanceled("create block")
        locks = [_lock(block.cidr, loc) for loc in block.locations]
        if any(lock in self.locks for lock in locks):
            raise AddressLocked()
        for key, number in rules:
            if number in self.slot_items.get(key, {}):
                raise SlotTaken(key, number)
        if block.waf_set is not None:
            members = self.waf_members.setdefault(block.waf_set, {})
            if block.cidr in members:
                raise AddressLocked()
            if len(members) >= self.waf_limit:
                raise SetFull(block.waf_set)
            members[block.cidr] = block.id
        self.blocks[block.id] = block.model_copy(deep=True)
        for lock in locks:
            self.locks[lock] = block.id
        for key, number in rules:
            self.hold(key, number, block.id, block.cidr, block.created_at)
        if offender_applied is not None:
            self.offenders[block.cidr] = list(offender_applied)
        self._add(history)

    def record_ended(self, block: Block, history: Sequence[HistoryEvent]) -> None:
        self._call("record_ended")
        if block.id in self.blocks:
            raise TransactionCanceled("ended block")
        self.blocks[block.id] = block.model_copy(deep=True)
        self._add(history)

    def drop_lock(self, cidr: str, block_id: str, location: str = refs.HOME) -> None:
        self._call("drop_lock")
        if self.locks.get(_lock(cidr, location)) == block_id:
            del self.locks[_lock(cidr, location)]

    def fail_location(
        self, block: Block, location: str, keys: Sequence[str], reason: str, history: HistoryEvent
    ) -> Block:
        self._call("fail_location")
        stored = self._in(block.id, frozenset({"pending"}))
        for key in keys:
            if key in stored.rules:
                self._free(key, stored.rules.pop(key), block.id)
        stored.failures = {**stored.failures, location: reason}
        if self.locks.get(_lock(block.cidr, location)) == block.id:
            del self.locks[_lock(block.cidr, location)]
        self._add([history])
        return self.block(block.id)

    # -- transitions ------------------------------------------------------------------------------

    def _unchanged(self, block_id: str) -> Unchanged:
        found = self.blocks.get(block_id)
        return Unchanged(found.model_copy(deep=True) if found else None)

    def _in(self, block_id: str, states: frozenset[str]) -> Block:
        """The stored block if it is in one of ``states`` (the condition of every transition)."""
        found = self.blocks.get(block_id)
        if found is None or found.state not in states:
            raise self._unchanged(block_id)
        return found

    def extend(self, block: Block, expires_at: int, history: HistoryEvent) -> Block:
        self._call("extend")
        stored = self._in(block.id, frozenset({"pending", "active"}))
        if not stored.expires_at < expires_at:
            raise self._unchanged(block.id)
        stored.expires_at = expires_at
        self._add([history])
        return block.model_copy(update={"expires_at": expires_at})

    def transition(
        self,
        block_id: str,
        from_states: frozenset[str],
        to_state: str,
        now: int,
        ending: tuple[str, str, str | None] | None = None,
    ) -> Block:
        self._call("transition")
        stored = self._in(block_id, from_states)
        changes: dict[str, object] = {"state": to_state, "state_since": now}
        if ending is not None:
            changes.update(ending_state=ending[0], ending_reason=ending[1])
            if ending[2] is not None:
                changes["ending_source"] = ending[2]
        self.blocks[block_id] = Block.model_validate({**stored.model_dump(), **changes})
        return self.block(block_id)

    def activate(self, block_id: str, cidr: str, now: int, history: HistoryEvent, waf_only: bool = False) -> None:
        self._call("activate")
        stored = self._in(block_id, frozenset({"pending"}))
        stored.state, stored.state_since = "active", now
        self._add([history])
        self.offenders.setdefault(cidr, []).append(now)

    def begin_release_if_due(self, block_id: str, now: int) -> Block:
        self._call("begin_release_if_due")
        stored = self._in(block_id, frozenset({"active"}))
        if not stored.expires_at <= now:
            raise self._unchanged(block_id)
        stored.state, stored.state_since = "releasing", now
        stored.ending_state = stored.ending_reason = "expired"
        return self.block(block_id)

    def finish(self, block: Block, final_state: str, reason: str, now: int, history: HistoryEvent) -> Block:
        self._call("finish")
        stored = self._in(block.id, frozenset({"releasing"}))
        # The adapter gives back what the block still holds, then skips what it no longer holds.
        for key, number in block.rules.items():
            self._free(key, number, block.id)
        for loc in block.locations:
            if self.locks.get(_lock(block.cidr, loc)) == block.id:
                del self.locks[_lock(block.cidr, loc)]
        self.blocks[block.id] = Block.model_validate(
            {
                **stored.model_dump(),
                "state": final_state,
                "ended_at": now,
                "state_since": now,
                "end_reason": reason,
                "ending_state": None,
                "ending_reason": None,
                "ending_source": None,
            }
        )
        self._add([history])
        ended = {"state": final_state, "ended_at": now, "state_since": now, "end_reason": reason}
        return block.model_copy(update={**ended, "ending_state": None, "ending_reason": None, "ending_source": None})

    # -- history ----------------------------------------------------------------------------------

    def _add(self, events: Sequence[HistoryEvent]) -> None:
        for n, event in enumerate(events):
            order = (_ms(event.at), event.block_id, n, len(self._history))
            # Read back as stored: ``at`` is kept in whole seconds (the sort key keeps the milliseconds).
            self._history.append(_Stored(event.model_copy(update={"at": float(int(event.at))}), order))

    def add_history(self, *events: HistoryEvent) -> None:
        self._call("add_history")
        self._add(events)

    def history(self, cidr: str, since: float | None = None, block_id: str | None = None) -> list[HistoryEvent]:
        self._call("history")
        kept = [
            s
            for s in self._history
            if s.event.cidr == cidr
            and (since is None or s.order[0] >= _ms(since))
            and (block_id is None or s.event.block_id == block_id)
        ]
        return [s.event.model_copy() for s in sorted(kept, key=lambda s: s.order)]

    # -- rule slots -------------------------------------------------------------------------------

    def slots(self, key: str) -> dict[int, str]:
        self._call("slots")
        return {n: s.block_id for n, s in self.slot_items.get(key, {}).items()}

    def take_slot(self, block: Block, key: str, number: int, now: int, evicted: dict[str, str] | None = None) -> bool:
        self._call("take_slot")
        stored = self.blocks.get(block.id)
        if stored is None or stored.state != "pending" or key in stored.rules:
            raise self._unchanged(block.id)
        if number in self.slot_items.get(key, {}):
            return False
        self.hold(key, number, block.id, block.cidr, now)
        stored.rules[key] = number
        if evicted is not None:
            stored.evicted.append(dict(evicted))
        return True

    def quarantine_slot(self, block: Block, key: str, number: int, found: str) -> None:
        self._call("quarantine_slot")
        slot = self.slot_items.get(key, {}).get(number)
        stored = self.blocks.get(block.id)
        if slot is None or slot.block_id != block.id or stored is None or stored.state != "pending":
            raise Unchanged(self.get(block.id))  # dal.slots: the block as it is, already moved
        slot.block_id, slot.found = FOREIGN, found
        stored.rules.pop(key, None)

    def claim_slot(self, key: str, number: int, holder: str | None, claimant: str, now: int) -> bool:
        self._call("claim_slot")
        slot = self.slot_items.get(key, {}).get(number)
        if (slot is not None) if holder is None else (slot is None or slot.block_id != holder):
            return False
        self.hold(key, number, claimant, "", now)
        return True

    def move_slot(self, block: Block, key: str, old: int, new: int, found: str, now: int) -> bool:
        self._call("move_slot")
        slots = self.slot_items.get(key, {})
        stored = self.blocks.get(block.id)
        old_slot = slots.get(old)
        if (
            new in slots
            or stored is None
            or stored.state != "active"
            or stored.rules.get(key) != old
            or old_slot is None
            or old_slot.block_id != block.id
        ):
            return False
        self.hold(key, new, block.id, block.cidr, now)
        stored.rules[key] = new
        old_slot.block_id, old_slot.found = FOREIGN, found
        return True

    def slot_taken_at(self, key: str, number: int) -> int | None:
        self._call("slot_taken_at")
        slot = self.slot_items.get(key, {}).get(number)
        return slot.taken_at if slot else None

    def free_slot(self, key: str, number: int, block_id: str) -> bool:
        self._call("free_slot")
        return self._free(key, number, block_id)

    def _free(self, key: str, number: int, block_id: str) -> bool:
        slots = self.slot_items.get(key, {})
        if number not in slots or slots[number].block_id != block_id:
            return False
        del slots[number]
        return True


# -- the NACLs ------------------------------------------------------------------------------------


def _family(cidr: str) -> int:
    return 6 if ":" in cidr else 4


class MemoryNacls(Scripted):
    """``Nacls`` in memory: each NACL starts with EC2's default deny rules (32767, both families)."""

    def __init__(self, nacl_ids: Sequence[str]) -> None:
        super().__init__()
        self.unreachable: dict[str, str] = {}  # location → why its member role refuses
        self.subnets: dict[tuple[str, str], list[tuple[str, bool]]] = {}  # (location, subnet) → (NACL, tagged)
        self.acls: dict[str, dict[tuple[bool, int], Entry]] = {}
        for nacl_id in nacl_ids:
            self.acls[nacl_id] = {}
            for egress in (False, True):
                self.acls[nacl_id][(egress, DEFAULT_RULE)] = Entry(
                    nacl_id, DEFAULT_RULE, egress, "deny", "-1", "0.0.0.0/0"
                )

    # -- helpers for the tests (not part of the port) -----------------------------------------------

    def add(self, entry: Entry) -> None:
        """An entry written by someone else (an operator, another tool)."""
        self.acls[entry.nacl_id][(entry.egress, entry.rule_number)] = entry

    def denies(self, nacl_id: str) -> list[tuple[str, int, str]]:
        """The NACL's entries but the default rule, as (direction, rule number, CIDR), sorted."""
        return sorted(
            ("egress" if e.egress else "ingress", e.rule_number, e.cidr)
            for e in self.acls[nacl_id].values()
            if e.rule_number != DEFAULT_RULE
        )

    def at(self, nacl_id: str, rule_number: int, egress: bool = False) -> Entry | None:
        return self.acls[nacl_id].get((egress, rule_number))

    # -- the port ---------------------------------------------------------------------------------

    def _reach(self, *nacl_ids: str) -> None:
        for nacl_id in nacl_ids:
            location = refs.location_of(nacl_id)
            if location in self.unreachable:
                raise MemberUnreachable(location, self.unreachable[location])

    def entries(self, nacl_ids: list[str]) -> Mapping[str, Sequence[Entry]]:
        self._call("entries")
        self._reach(*nacl_ids)
        unknown = [n for n in nacl_ids if n not in self.acls]
        if unknown:
            raise LookupError(f"InvalidNetworkAclID.NotFound: {unknown}")
        return {n: list(self.acls[n].values()) for n in nacl_ids}

    def deny(self, nacl_id: str, rule_number: int, egress: bool, cidr: str, family: int) -> None:
        self._call("deny")
        self._reach(nacl_id)
        acl = self.acls[nacl_id]
        if (egress, rule_number) in acl:
            raise EntryExists(acl[(egress, rule_number)])
        same = [
            e
            for e in acl.values()
            if e.egress == egress and e.rule_number != DEFAULT_RULE and _family(e.cidr) == family
        ]
        if len(same) >= NACL_QUOTA:
            raise NaclQuotaExceeded(f"{nacl_id} has reached its quota of IPv{family} rules per direction")
        acl[(egress, rule_number)] = Entry(nacl_id, rule_number, egress, "deny", "-1", cidr)

    def delete(self, entry: Entry) -> None:
        self._call("delete")
        self._reach(entry.nacl_id)
        self.acls[entry.nacl_id].pop((entry.egress, entry.rule_number), None)  # NotFound is swallowed

    def managed_for_subnets(self, location: str, subnet_ids: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
        self._call("managed_for_subnets")
        if location in self.unreachable:
            raise MemberUnreachable(location, self.unreachable[location])
        found = dict.fromkeys(n for s in subnet_ids for n in self.subnets.get((location, s), []))
        return [n for n, tagged in found if tagged], [
            (n, "not tagged autoblock:managed=true") for n, t in found if not t
        ]


# -- WAF ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fill:
    count: int


@dataclass(frozen=True)
class SetDrift:
    ip_set: str
    removed: list[str]
    restored: list[str]


class MemoryWaf(Scripted):
    """``WafSets`` in memory: the table's members are the store's; ``sets`` what WAF holds, written
    whole by ``flush`` (one update per flush that finds a difference, counted in ``updates``)."""

    def __init__(self, store: MemoryStore, names: Sequence[str]) -> None:
        super().__init__()
        self.store = store
        self.sets: dict[str, set[str]] = {name: set() for name in names}
        self.updates: list[str] = []

    def summaries(self) -> Mapping[str, Fill]:
        self._call("summaries")
        return {name: Fill(len(self.store.waf_members.get(name, {}))) for name in self.sets}

    def leave(self, block: Block) -> bool:
        self._call("leave")
        members = self.store.waf_members.get(block.waf_set or "", {})
        if members.get(block.cidr) != block.id:
            return False
        del members[block.cidr]
        return True

    def flush(self, name: str, timeout: float = 25) -> None:
        self._call("flush")
        wanted = set(self.store.waf_members.get(name, {}))
        if self.sets[name] != wanted:
            self.sets[name] = wanted
            self.updates.append(name)

    def may_have_left_out(self, expires_at: int) -> bool:
        return False  # its flush writes every member, due or not

    def reconcile(self) -> tuple[list[SetDrift], dict[str, int]]:
        self._call("reconcile")
        drifts = []
        for name, held in self.sets.items():
            wanted = set(self.store.waf_members.get(name, {}))
            if held != wanted:
                drifts.append(SetDrift(name, sorted(held - wanted), sorted(wanted - held)))
                self.sets[name] = wanted
                self.updates.append(name)
        return drifts, {name: len(self.store.waf_members.get(name, {})) for name in self.sets}


# -- the workflow ---------------------------------------------------------------------------------


class RecordingWorkflow(Scripted):
    """``Workflow`` that records: one execution per block (named after it), started or stopped."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[Ticket] = []
        self.stopped: list[tuple[str, str, str]] = []
        self.executions: dict[str, str] = {}  # block id → RUNNING, SUCCEEDED, FAILED, ABORTED

    def cannot_start(self, times: int = 1) -> None:
        self.fail("start", WorkflowError("could not start the block's workflow: ServiceUnavailable"), times)

    def start(self, ticket: Ticket) -> None:
        self._call("start")
        if ticket.block_id in self.executions:
            return  # ExecutionAlreadyExists: the block's name is the idempotency key
        self.executions[ticket.block_id] = "RUNNING"
        self.started.append(ticket.model_copy(deep=True))

    def stop(self, block_id: str, error: str, cause: str) -> bool:
        self._call("stop")
        if self.executions.get(block_id) != "RUNNING":
            return False
        self.executions[block_id] = "ABORTED"
        self.stopped.append((block_id, error, cause))
        return True

    def status(self, block_id: str) -> str | None:
        self._call("status")
        return self.executions.get(block_id)


# -- the clock ------------------------------------------------------------------------------------


class ManualClock:
    """Time stands still unless a test advances it; the logic's sleeps advance it (and are recorded)."""

    def __init__(self, start: float = T0) -> None:
        self.t = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds

    def advance(self, seconds: float) -> None:
        self.t += seconds


# -- the builder ----------------------------------------------------------------------------------

DEFAULTS: dict[str, object] = {
    "table_name": "blocks",
    "nacl_ids": ("acl-a", "acl-b"),
    "rule_number_start": 100,
    "rule_limit": 3,
    "default_duration_seconds": 3600,
    "max_duration_seconds": 7 * 86400,
    "min_prefix_length_v4": 24,
    "min_prefix_length_v6": 64,
    "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:autoblock",
}


@dataclass
class Rig:
    """A Lifecycle on fakes, and the fakes to look at."""

    lifecycle: Lifecycle
    store: MemoryStore
    nacls: MemoryNacls
    workflow: RecordingWorkflow
    clock: ManualClock
    source: str = "test"
    others: list[Lifecycle] = field(default_factory=list)
    waf: MemoryWaf | None = None

    @property
    def settings(self) -> Settings:
        return self.lifecycle.settings

    def open(self, ip: str, **request: object) -> Opened:
        """POST /blocks, as the API calls it."""
        return self.lifecycle.open(BlockRequest.model_validate({"ip": ip, **request}), self.source)

    def ticket(self, block_id: str) -> Ticket:
        """The ticket the block's execution was started with."""
        return next(t for t in self.workflow.started if t.block_id == block_id)

    def run_until_active(self, block_id: str) -> Ticket:
        """The execution's Reserve (when the ticket asks for it) and Apply tasks."""
        ticket = self.ticket(block_id)
        if not ticket.reserved:
            ticket = self.lifecycle.reserve(ticket)
        return self.lifecycle.apply(ticket)

    def another_container(self, **overrides: object) -> Lifecycle:
        """Another warm Lambda container: the same table, NACLs and workflow, its own slot view (and
        the settings changed by ``overrides``: the stack updated since)."""
        settings = Settings.model_validate({**self.settings.model_dump(), **overrides})
        other = Lifecycle(
            settings, self.store, self.nacls, self.workflow, self.clock.now, self.clock.sleep, waf=self.waf
        )
        self.others.append(other)
        return other

    def sweeper(self) -> Sweeper:
        return Sweeper(self.lifecycle, self.store, self.workflow.status, self.clock.now)


WAF_SETS = "4:autoblock-v4-1:id-v4-1,4:autoblock-v4-2:id-v4-2,6:autoblock-v6-1:id-v6-1"


def lifecycle(**overrides: object) -> Rig:
    """A Lifecycle whose ports are fakes, with the settings above changed by ``overrides``
    (``waf_ip_sets`` set: a MemoryWaf over those sets)."""
    settings = Settings.model_validate({**DEFAULTS, **overrides})
    store, nacls, workflow, clock = MemoryStore(), MemoryNacls(settings.nacl_refs), RecordingWorkflow(), ManualClock()
    waf = MemoryWaf(store, [s.name for s in settings.waf_sets]) if settings.waf_sets else None
    run = Lifecycle(settings, store, nacls, workflow, now=clock.now, sleep=clock.sleep, waf=waf)
    return Rig(run, store, nacls, workflow, clock, waf=waf)
