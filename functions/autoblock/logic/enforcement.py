"""The deny entries: created from a block's ticket (no read of the block first), removed exactly.

Only autoblock's own entries are ever removed: the rule number a block holds, its direction, a
deny of all protocols, and exactly the block's CIDR. A rule we did not write at one of our numbers
is left alone: the number is quarantined and the block moves to another one.
"""

from __future__ import annotations

from autoblock.errors import MemberUnreachable, SlotConflict
from autoblock.logic import clock, refs
from autoblock.logic.context import Context, count, logger
from autoblock.logic.reservation import Reservations
from autoblock.logic.slots import by_slot_location, slot_location, split_slot_key
from autoblock.models import TARGETS, Block, EntryExists, Ticket, Unchanged


def block_of(ticket: Ticket, nacl_ids: tuple[str, ...]) -> Block:
    """The block as its ticket knows it (what applying it needs)."""
    return Block(
        targets=[t for t in TARGETS if (nacl_ids if t == "nacl" else ticket.waf_set)],
        waf_set=ticket.waf_set,
        id=ticket.block_id,
        cidr=ticket.cidr,
        family=ticket.family,
        direction=ticket.direction,
        nacl_ids=list(nacl_ids),
        state=ticket.state,
        source=ticket.source,
        created_at=0,
        expires_at=clock.from_iso_z(ticket.expires_at),
        rules=dict(ticket.rules),
    )


class Enforcement:
    def __init__(self, ctx: Context, reservations: Reservations) -> None:
        self.ctx = ctx
        self.reservations = reservations

    def apply(self, ticket: Ticket) -> Ticket:
        """Create the deny entries of a pending block and make it active. An account and Region that
        cannot be reached (organization mode) is given up on its own, recorded with the reason; the
        block fails only when it could be applied nowhere."""
        if ticket.state != "pending":
            return ticket
        nacl_ids = tuple(ticket.nacl_ids) or (() if ticket.waf_set else self.ctx.settings.nacl_refs)
        block = block_of(ticket, nacl_ids)
        unreachable: dict[str, str] = {}
        for key in sorted(block.rules):
            location = slot_location(key)
            if location in unreachable or key not in block.rules:
                continue
            try:
                block, done = self._deny(block, key)
            except MemberUnreachable as exc:
                unreachable[location] = str(exc)
                continue
            if done is not None:
                return done
        for location, reason in sorted(unreachable.items()):
            block = self._give_up(block, location, reason)
        if not block.rules and block.waf_set is None:
            raise MemberUnreachable(refs.HOME, "; ".join(unreachable.values()) or "no NACL to apply the block in")
        places = [f"{k.replace('|', ' ')} rule {n}" for k, n in sorted(block.rules.items())]
        if block.waf_set is not None:
            # Only once an update holding its address has succeeded does a block count as applied.
            assert self.ctx.waf is not None, "a block in a WAF IP set on a stack without WAF"
            self.ctx.waf.flush(block.waf_set)
            places.append(f"WAF IP set {block.waf_set}")
        applied = self.ctx.event(
            block, "applied", block.source, f"denied in {', '.join(places)}", None, block.expires_at
        )
        try:
            self.ctx.store.activate(block.id, block.cidr, int(self.ctx.now()), applied, waf_only=not block.rules)
        except Unchanged as unchanged:
            current = unchanged.current
            if current is not None and current.state == "active":
                return Ticket.of(current)  # an earlier attempt of this task made it active
            # Unblocked while we were applying: whoever moved it to releasing may have looked at
            # the NACL before our entries existed, so remove what we created ourselves. (Its WAF
            # set is the table's members, which the release takes it out of.)
            self.remove_entries(block)
            return Ticket.of(current) if current is not None else ticket.model_copy(update={"state": "failed"})
        count("BlocksApplied")
        return Ticket.of(block.model_copy(update={"state": "active"}))

    def _deny(self, block: Block, key: str) -> tuple[Block, Ticket | None]:
        """The entry of one (NACL, direction); a ticket when the block must not go on (it was ended
        or moved meanwhile). A foreign entry at our number: the number is quarantined, another taken."""
        for _ in range(self.ctx.settings.rule_limit):
            number = block.rules[key]
            nacl_id, direction = split_slot_key(key)
            try:
                self.ctx.nacls.deny(nacl_id, number, direction == "egress", block.cidr, block.family)
                return block, None
            except EntryExists as exists:
                if exists.entry is not None and exists.entry.is_deny_of(block.cidr):
                    return block, None  # ours, from an earlier attempt of this task
                # A rule we did not write sits at our number: leave it alone, move elsewhere.
                logger.warning("foreign entry in the managed range", extra={"slot": key, "rule_number": number})
                try:
                    self.ctx.store.quarantine_slot(block, key, number, repr(exists.entry))
                    self.reservations.view.learn(key, number, "foreign")
                    del block.rules[key]
                except Unchanged as unchanged:
                    # An earlier attempt of this task moved the block already: the ticket is stale,
                    # the table has the number it moved to.
                    if unchanged.current is None or unchanged.current.state != "pending":
                        return block, Ticket.of(unchanged.current) if unchanged.current else Ticket.of(block)
                    block = unchanged.current
                if key not in block.rules:
                    block = self.reservations.reserve_one(block, key)
                if block.state != "pending" or key not in block.rules:
                    return block, Ticket.of(block)
        raise SlotConflict(f"every rule number tried in {key} holds an entry autoblock does not own")

    def _give_up(self, block: Block, location: str, reason: str) -> Block:
        """Leave one account and Region out of a pending block: what it created there is removed (if
        it can be), its numbers and lock there given back, and a ``failed`` event says why."""
        keys = list(by_slot_location(block.rules).get(location, {}))
        self.remove_entries(block.model_copy(update={"rules": {k: block.rules[k] for k in keys}}))
        logger.warning("not applied in a member account", extra={"block_id": block.id, "location": location})
        count("BlocksFailedInAccount")
        why = f"not blocked in {refs.describe(location)}: {reason}"
        failed = self.ctx.event(block, "failed", block.source, why, None, block.expires_at)
        try:
            return self.ctx.store.fail_location(block, location, keys, reason, failed)
        except Unchanged as unchanged:
            return unchanged.current or block

    def remove_entries(self, block: Block) -> dict[str, str]:
        """Remove the block's entries; answers the accounts and Regions that could not be reached
        (each with why), where an entry may be left for the sweeper to remove later."""
        left: dict[str, str] = {}
        if not block.rules:
            return left
        for location, rules in sorted(by_slot_location(block.rules).items()):
            try:
                entries = self.ctx.nacls.entries(sorted({split_slot_key(k)[0] for k in rules}))
                for key, number in rules.items():
                    nacl_id, direction = split_slot_key(key)
                    egress = direction == "egress"
                    for entry in entries.get(nacl_id, []):
                        if entry.rule_number == number and entry.egress == egress and entry.is_deny_of(block.cidr):
                            self.ctx.nacls.delete(entry)
            except MemberUnreachable as exc:
                logger.warning("entries left in a member account", extra={"block_id": block.id, "location": location})
                left[location] = str(exc)
        return left
