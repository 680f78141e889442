"""A block ends: it expires, is unblocked, evicted, or compensated after a failure.

Ending is two steps, each a conditional write, so that concurrent actors (the workflow, the API,
an eviction, the sweeper) agree on who does it: the block moves to ``releasing`` (recording how it
is to end), then whoever moved it removes its entries, takes its address out of its WAF IP set
(and waits until an update without it has succeeded), and finishes it in one transaction with its
event, its rule numbers and its address lock. A release that stops half-way is finished by anyone
later (``resume_release``), with the ending it recorded.
"""

from __future__ import annotations

from autoblock.errors import REJECTIONS, BlockNotFound
from autoblock.logic import refs
from autoblock.logic.context import Context, count, logger
from autoblock.logic.enforcement import Enforcement
from autoblock.logic.reservation import SlotView
from autoblock.models import Block, Unchanged

EXPIRY_SLACK_SECONDS = 2
COMPENSABLE = frozenset({"pending", "active"})


class Releases:
    def __init__(self, ctx: Context, enforcement: Enforcement, view: SlotView) -> None:
        self.ctx = ctx
        self.enforcement = enforcement
        self.view = view

    def expire(self, block_id: str, due: int | None = None) -> Block:
        """After the Wait: release the block if it is due; an extended block is returned active.
        ``due``: the expiry the Wait waited for; a Wait that ended within EXPIRY_SLACK_SECONDS of it
        (Step Functions counts whole seconds) sleeps the rest first rather than ask too early."""
        if due is not None and 0 < (early := due - self.ctx.now()) <= EXPIRY_SLACK_SECONDS:
            self.ctx.sleep(early)
        for _ in range(2):
            now = self.ctx.now()
            try:
                block = self.ctx.store.begin_release_if_due(block_id, int(now))
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
                    self.ctx.sleep(early)
                    continue
                return current  # extended (active, later expiry) or already released
            done = self._complete(block, "expired", "expired")
            if done.state == "expired":
                count("BlocksExpired")
            return done
        current = self.ctx.store.get(block_id)
        if current is None:
            raise BlockNotFound(f"block {block_id} disappeared")
        return current

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
            block = self.ctx.store.transition(
                block_id, from_states, "releasing", int(self.ctx.now()), ending=(final_state, reason, source)
            )
        except Unchanged as unchanged:
            if unchanged.current is None:
                raise BlockNotFound(f"no block with id {block_id}") from None
            return unchanged.current  # someone else releases it, or it has ended
        return self._complete(block, final_state, reason)

    def compensate(self, block_id: str, error: str, cause: str) -> Block:
        """Undo what a failed execution did (entries, rule numbers, the address lock) and end the block
        ``rejected`` or ``failed``. A block some other actor is releasing is left to that actor (or,
        should it die, to the sweeper): compensation never takes a release over."""
        final_state = "rejected" if error in REJECTIONS else "failed"
        reason = f"{error}: {cause}"
        logger.warning("compensating", extra={"block_id": block_id, "error": error})
        count("BlocksRejected" if final_state == "rejected" else "BlocksFailed", Reason=error[:64])
        try:
            block = self.ctx.store.transition(
                block_id, COMPENSABLE, "releasing", int(self.ctx.now()), ending=(final_state, reason, None)
            )
        except Unchanged as unchanged:
            current = unchanged.current
            if current is None:
                raise BlockNotFound(f"no block with id {block_id}") from None
            ours = (current.ending_state, current.ending_reason) == (final_state, reason)
            if current.state == "releasing" and ours:
                return self.resume_release(current)  # a retry of this very compensation
            return current
        return self._complete(block, final_state, reason)

    def resume_release(self, block: Block) -> Block:
        """Finish a release that stopped half-way (its actor died): entries, slots, lock, final state."""
        return self._complete(block, block.ending_state or "failed", block.ending_reason or "release resumed")

    def _complete(self, block: Block, final_state: str, reason: str) -> Block:
        left = self.enforcement.remove_entries(block)
        if block.waf_set is not None and self.ctx.waf is not None:
            # Out of the set's desired contents, then wait for (or write) the update without it.
            self.ctx.waf.leave(block)
            self.ctx.waf.flush(block.waf_set)
        if left:
            where = "; ".join(f"{refs.describe(loc)} ({why})" for loc, why in sorted(left.items()))
            reason = f"{reason}; entries left in {where}: the sweeper removes them once the role answers"
        ended = self.ctx.event(block, final_state, block.ending_source or block.source, reason, None, block.expires_at)
        try:
            done = self.ctx.store.finish(block, final_state, reason, int(self.ctx.now()), ended)
        except Unchanged as unchanged:
            return unchanged.current or block  # a concurrent release of the same block finished first
        for key, number in block.rules.items():
            self.view.learn(key, number, None)
        logger.info("block released", extra={"block_id": block.id, "state": final_state})
        return done
