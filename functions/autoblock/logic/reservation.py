"""Rule numbers: which one a new block takes, and the Reserve task that makes room when the range
is full (WhenFull=evict-soonest-expiring).

A new block's numbers are chosen from the ``SlotView``, a warm container's copy of the slot
partitions, and taken in the very transaction that creates the block. The view is only a hint:
the transaction's conditions decide. A number the view thought free but another block holds
cancels the transaction (the view learns it and the next free one is tried); a number freed
elsewhere looks taken until the view is read again, which it always is before a range is called
full. So a stale view costs a retry, never a wrong answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from autoblock.errors import BlockNotFound, CapacityExceeded
from autoblock.logic.context import Context, count, logger
from autoblock.logic.slots import split_slot_key, targets
from autoblock.models import Block, Unchanged

SLOT_VIEW_SECONDS = 60.0
RESERVE_ATTEMPTS_PER_SLOT = 50


class SlotView:
    """Rule number → holder for each (NACL, direction), as last read or learned, for up to
    ``lifetime`` seconds. Thread-safe (the local stack serves requests from several threads)."""

    def __init__(
        self,
        read: Callable[[str], dict[int, str]],
        lifetime: float = SLOT_VIEW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._lifetime = lifetime
        self._clock = clock
        self._views: dict[str, tuple[float, dict[int, str]]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def taken(self, key: str, fresh: bool = False) -> dict[int, str]:
        with self._lock:
            cached = self._views.get(key)
            if cached is not None and not fresh and self._clock() - cached[0] < self._lifetime:
                self.hits += 1
                return dict(cached[1])
        view = self._read(key)
        with self._lock:
            self.misses += 1
            self._views[key] = (self._clock(), view)
        return dict(view)

    def learn(self, key: str, number: int, holder: str | None) -> None:
        """What a write just told us: ``number`` is now held by ``holder`` (None: free)."""
        with self._lock:
            if key not in self._views:
                return
            view = self._views[key][1]
            if holder is None:
                view.pop(number, None)
            else:
                view[number] = holder


class Reservations:
    def __init__(self, ctx: Context, view: SlotView, release: Callable[..., Block]) -> None:
        self.ctx = ctx
        self.view = view
        self._release = release

    def capacity(self, key: str, taken: dict[int, str]) -> str:
        nacl_id, direction = split_slot_key(key)
        rule_range = self.ctx.settings.rule_range
        return (
            f"{nacl_id} {direction} holds {len(taken)} of {self.ctx.settings.rule_limit} blocks "
            f"(rules {rule_range.start}-{rule_range.end}, RuleLimit)"
        )

    def pick(self, block: Block) -> tuple[dict[str, int], dict[str, str]]:
        """A free number for each (NACL, direction) of a new block, from the view (read again before
        a range is called full), and the ranges that are full, each with its capacity in words."""
        rule_range = self.ctx.settings.rule_range
        chosen: dict[str, int] = {}
        full: dict[str, str] = {}
        for key in targets(block.nacl_ids, block.direction):
            number = rule_range.first_free(self.view.taken(key))
            if number is None:
                taken = self.view.taken(key, fresh=True)
                number = rule_range.first_free(taken)
                if number is None:
                    full[key] = self.capacity(key, taken)
                    continue
            chosen[key] = number
        return chosen, full

    # -- the Reserve task: what the new block could not take ---------------------------------------

    def reserve(self, block: Block) -> Block:
        """Hold one rule number per (NACL, direction) for a pending block, evicting if WhenFull says so."""
        for key in targets(block.nacl_ids, block.direction):
            if block.state != "pending":
                return block
            if key not in block.rules:
                block = self.reserve_one(block, key)
        return block

    def reserve_one(self, block: Block, key: str) -> Block:
        rule_range = self.ctx.settings.rule_range
        evicted: dict[str, str] | None = None
        for _ in range(RESERVE_ATTEMPTS_PER_SLOT):
            taken = self.view.taken(key, fresh=True)
            number = rule_range.first_free(taken)
            if number is None:
                evicted = self._make_room(block, key, taken)
                continue
            try:
                if self.ctx.store.take_slot(block, key, number, int(self.ctx.now()), evicted):
                    self.view.learn(key, number, block.id)
                    block.rules[key] = number
                    if evicted is not None:
                        block.evicted.append(evicted)
                    return block
            except Unchanged as unchanged:
                current = unchanged.current
                if current is None:
                    raise BlockNotFound(f"block {block.id} disappeared") from None
                return current  # unblocked meanwhile, or the slot was taken by a retry of this task
        raise CapacityExceeded(f"could not reserve a rule number in {key} after {RESERVE_ATTEMPTS_PER_SLOT} attempts")

    def evict(self, block_id: str, reason: str, source: str) -> None:
        """End an active block early for another (WhenFull=evict-soonest-expiring)."""
        self._release(block_id, "evicted", reason, frozenset({"active"}), source=source)

    def _make_room(self, block: Block, key: str, taken: dict[int, str]) -> dict[str, str]:
        """End the active block that would end first (WhenFull=evict-soonest-expiring); its id and address."""
        capacity = self.capacity(key, taken)
        if self.ctx.settings.when_full != "evict-soonest-expiring":
            raise CapacityExceeded(f"no free rule number: {capacity}; WhenFull={self.ctx.settings.when_full}")
        holders = [
            b for b in self.ctx.store.get_many(sorted(set(taken.values()))) if b.state == "active" and b.id != block.id
        ]
        if not holders:
            raise CapacityExceeded(f"no free rule number and no active block to evict: {capacity}")
        victim = min(holders, key=lambda b: (b.expires_at, b.created_at))
        logger.warning("evicting the block that ends first", extra={"block_id": victim.id, "for_block": block.id})
        count("BlocksEvicted")
        self._release(
            victim.id,
            "evicted",
            f"evicted early for block {block.id} ({block.cidr}): {capacity}; WhenFull=evict-soonest-expiring",
            frozenset({"active"}),
            source=block.source,
        )
        return {"id": victim.id, "ip": victim.cidr}
