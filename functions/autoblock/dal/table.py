"""The DynamoDB table adapter: blocks, address locks and offenders here; rule slots in
``dal.slots``, history in ``dal.history``; the item layout in ``dal.items``.

Each transition of a block is one request: a conditional UpdateItem that answers with the block as
it now is, or a TransactWriteItems that writes the transition together with its history event and
everything that changes with it (the lock and rule numbers of a new block, the offender record of
an applied one, the numbers and lock an ended block gives back).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast, get_args

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from autoblock.dal.aws import cancellation_reasons, error_code, translated
from autoblock.dal.history import HistoryItems
from autoblock.dal.items import (
    LIVE,
    LIVE_INDEX,
    LIVE_WAF,
    block_key,
    from_wire,
    lock_key,
    offender_key,
    plain,
    to_block,
)
from autoblock.dal.slots import SlotItems
from autoblock.dal.waf import extend_writes, join_writes
from autoblock.logic import refs
from autoblock.models import Address, AddressLocked, Block, BlockState, HistoryEvent, SetFull, SlotTaken, Unchanged

CCF = "ConditionalCheckFailed"


def _cancelled(exc: ClientError) -> list[str] | None:
    """The per-item reasons of a cancelled transaction, None for any other error."""
    return cancellation_reasons(exc) if error_code(exc) == "TransactionCanceledException" else None


def latest(blocks: Iterable[Block]) -> list[Block]:
    """One copy of each block, in its latest state: the live index's partitions are read one after
    the other, so a block that moved between them meanwhile (a WAF block made active leaves
    ``LIVE`` for ``LIVE#WAF``) is found in both."""
    order = get_args(BlockState)  # the order a block goes through its states
    found: dict[str, Block] = {}
    for block in blocks:
        seen = found.get(block.id)
        if seen is None or order.index(block.state) > order.index(seen.state):
            found[block.id] = block
    return list(found.values())


class BlockTable(HistoryItems, SlotItems):
    # -- reads ----------------------------------------------------------------------------------

    def get(self, block_id: str) -> Block | None:
        with translated("GetItem block"):
            item = self.table.get_item(Key=block_key(block_id), ConsistentRead=True).get("Item")
        return to_block(item) if item else None

    def get_many(self, block_ids: list[str]) -> list[Block]:
        blocks: list[Block] = []
        for i in range(0, len(block_ids), 100):
            keys = [block_key(b) for b in dict.fromkeys(block_ids[i : i + 100])]
            request: dict[str, Any] = {self.name: {"Keys": keys, "ConsistentRead": True}}
            while request:
                with translated("BatchGetItem blocks"):
                    answer = self.client.batch_get_item(RequestItems=request)
                blocks.extend(to_block(item) for item in answer["Responses"].get(self.name, []))
                request = answer.get("UnprocessedKeys") or {}
        return blocks

    def address(self, cidr: str, locations: Sequence[str] = (refs.HOME,)) -> Address:
        """The address's lock holder in each location and its offender record, in one BatchGetItem."""
        keys = [lock_key(cidr, loc) for loc in locations]
        request: dict[str, Any] = {self.name: {"Keys": [*keys, offender_key(cidr)], "ConsistentRead": True}}
        items: list[dict[str, Any]] = []
        while request:
            with translated("BatchGetItem address"):
                answer = self.client.batch_get_item(RequestItems=request)
            items.extend(plain(i) for i in answer["Responses"].get(self.name, []))
            request = answer.get("UnprocessedKeys") or {}
        location = {lock_key(cidr, loc)["pk"]: loc for loc in locations}
        offender = next((i for i in items if i["sk"] == "OFFENDER"), {})
        return Address(
            holders={location[i["pk"]]: str(i["block_id"]) for i in items if i["sk"] == "ADDR"},
            applied=tuple(sorted(int(t) for t in offender.get("applied", []))),
        )

    def live(self) -> list[Block]:
        """Every live block, soonest expiry first, read from the sparse ``live`` index (both of its
        partitions: see ``dal.items``)."""
        blocks = latest([*self._live(LIVE), *self._live(LIVE_WAF)])
        return sorted(blocks, key=lambda b: (b.expires_at, b.id))

    def due(self, before: int, waf: bool = True) -> list[Block]:
        """What the sweeper looks at: every live block that holds a rule number or is not active
        (few: a NACL holds RuleLimit), and (``waf``) the active WAF-only blocks whose expiry is
        before ``before`` (none, unless a release is late): never every active WAF block."""
        return latest([*self._live(LIVE), *(self._live(LIVE_WAF, before) if waf else [])])

    def waf_soonest(self, limit: int) -> list[Block]:
        """The active WAF-only blocks that end first (eviction when every WAF IP set is full)."""
        with translated("Query live WAF"):
            answer = self.table.query(
                IndexName=LIVE_INDEX, KeyConditionExpression=Key("gsi1pk").eq(LIVE_WAF), Limit=limit
            )
        return [to_block(item) for item in answer["Items"]]

    def _live(self, partition: str, before: int | None = None) -> list[Block]:
        condition: Any = Key("gsi1pk").eq(partition)
        if before is not None:
            condition = condition & Key("gsi1sk").lt(f"{before:010d}")
        items = self.pages("Query live", self.table.query, IndexName=LIVE_INDEX, KeyConditionExpression=condition)
        return [to_block(item) for item in items]

    # -- a new block ----------------------------------------------------------------------------

    def create(
        self, block: Block, history: Sequence[HistoryEvent], offender_applied: Sequence[int] | None = None
    ) -> None:
        """Write a new pending block with its address lock, the rule numbers in ``block.rules`` and
        its first events, in one transaction. ``offender_applied`` rewrites the offender record (to
        drop times that left the escalation window). AddressLocked if another live block holds the
        address; SlotTaken for a number another block holds."""
        item = {
            **block_key(block.id),
            **block.model_dump(exclude_none=True),
            "gsi1pk": LIVE,
            "gsi1sk": f"{block.expires_at:010d}#{block.id}",
        }
        locks = [
            {**lock_key(block.cidr, loc), "block_id": block.id, "created_at": block.created_at}
            for loc in block.locations
        ]
        rules = sorted(block.rules.items())
        writes: list[dict[str, Any]] = [
            {"Put": {"TableName": self.name, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
            *(
                {"Put": {"TableName": self.name, "Item": lock, "ConditionExpression": "attribute_not_exists(pk)"}}
                for lock in locks
            ),
            *(self.new_slot(block, key, number, block.created_at) for key, number in rules),
        ]
        waf = join_writes(self.name, block) if block.waf_set is not None else []
        writes += waf
        if offender_applied is not None:
            offender = {
                **offender_key(block.cidr),
                "applied": list(offender_applied),
                "ttl": block.created_at + self.history_ttl_seconds,
            }
            writes.append({"Put": {"TableName": self.name, "Item": offender}})
        writes += [self.history_put(e, n) for n, e in enumerate(history)]
        try:
            with translated("TransactWriteItems create block"):
                self.client.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            reasons = _cancelled(exc)
            if reasons is None:
                raise
            if CCF in reasons[1 : 1 + len(locks)]:
                raise AddressLocked() from None
            for (key, number), reason in zip(rules, reasons[1 + len(locks) :], strict=False):
                if reason == CCF:
                    raise SlotTaken(key, number) from None
            joined = reasons[1 + len(locks) + len(rules) : 1 + len(locks) + len(rules) + len(waf)]
            if joined[:1] == [CCF]:
                raise AddressLocked() from None  # its address is still in the set: a release is finishing
            if CCF in joined:
                raise SetFull(str(block.waf_set)) from None
            raise

    def record_ended(self, block: Block, history: Sequence[HistoryEvent]) -> None:
        """A block born ended (a dry run, a request refused for capacity): outside the live index, no
        lock, no rule number; kept HistoryRetentionDays like every ended block."""
        ttl = block.created_at + self.history_ttl_seconds
        item = {**block_key(block.id), **block.model_dump(exclude_none=True), "ttl": ttl}
        with translated("TransactWriteItems ended block"):
            self.client.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": self.name, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
                    *(self.history_put(e, n) for n, e in enumerate(history)),
                ]
            )

    def drop_lock(self, cidr: str, block_id: str, location: str = refs.HOME) -> None:
        """Remove the address lock (of ``location``) if ``block_id`` still holds it."""
        try:
            with translated("DeleteItem address lock"):
                self.table.delete_item(
                    Key=lock_key(cidr, location),
                    ConditionExpression="block_id = :id",
                    ExpressionAttributeValues={":id": block_id},
                )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    # -- transitions ----------------------------------------------------------------------------

    def _update(self, what: str, block_id: str, **kwargs: Any) -> Block:
        """A conditional UpdateItem on a block, answering with the block as it now is; Unchanged
        (with the block as it is) if the condition fails."""
        try:
            with translated(f"UpdateItem {what}"):
                answer = self.table.update_item(
                    Key=block_key(block_id),
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    **kwargs,
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                old = cast(dict[str, Any] | None, exc.response.get("Item"))
                raise Unchanged(to_block(from_wire(old)) if old else None) from None
            raise
        return to_block(answer["Attributes"])

    def _transact(self, what: str, block_id: str, writes: list[dict[str, Any]]) -> list[str] | None:
        """A transaction whose first item is the block's conditional update: Unchanged (with the
        block as it is) if that condition failed; the reasons if another item's condition failed."""
        try:
            with translated(f"TransactWriteItems {what}"):
                self.client.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            reasons = _cancelled(exc)
            if reasons is None:
                raise
            if reasons[:1] == [CCF]:
                raise Unchanged(self.get(block_id)) from None
            if CCF in reasons:
                return reasons
            raise
        return None

    def _block_update(self, block_id: str, **kwargs: Any) -> dict[str, Any]:
        return {"Update": {"TableName": self.name, "Key": block_key(block_id), **kwargs}}

    def extend(self, block: Block, expires_at: int, history: HistoryEvent) -> Block:
        """Move a live block's expiry later; Unchanged if it is not pending/active or not earlier."""
        update = self._block_update(
            block.id,
            UpdateExpression="SET expires_at = :e, gsi1sk = :s",
            ConditionExpression="#st IN (:p, :a) AND expires_at < :e",
            ExpressionAttributeNames={"#st": "state"},
            ExpressionAttributeValues={
                ":e": expires_at,
                ":s": f"{expires_at:010d}#{block.id}",
                ":p": "pending",
                ":a": "active",
            },
        )
        writes = [update, self.history_put(history, 0)]
        if block.waf_set is not None:
            writes += extend_writes(self.name, block, expires_at)
        if self._transact("extend", block.id, writes):
            raise Unchanged(self.get(block.id))  # its set's member is gone: the block is no longer live
        return block.model_copy(update={"expires_at": expires_at})

    def transition(
        self,
        block_id: str,
        from_states: frozenset[str],
        to_state: str,
        now: int,
        ending: tuple[str, str, str | None] | None = None,
    ) -> Block:
        """Move a block to ``to_state`` if it is in one of ``from_states``; raise Unchanged otherwise.
        ``ending`` (state, reason, source) records how a block moving to releasing is to end."""
        names = {f":f{i}": s for i, s in enumerate(sorted(from_states))}
        values: dict[str, Any] = {":to": to_state, ":now": now, **names}
        update = "SET #st = :to, state_since = :now"
        if to_state == "releasing":  # back in the partition the sweeper reads whole (see ``due``)
            update += ", gsi1pk = :live"
            values[":live"] = LIVE
        if ending is not None:
            update += ", ending_state = :es, ending_reason = :er"
            values.update({":es": ending[0], ":er": ending[1]})
            if ending[2] is not None:
                update += ", ending_source = :eo"
                values[":eo"] = ending[2]
        return self._update(
            to_state,
            block_id,
            UpdateExpression=update,
            ConditionExpression=f"#st IN ({', '.join(names)})",
            ExpressionAttributeNames={"#st": "state"},
            ExpressionAttributeValues=values,
        )

    def activate(self, block_id: str, cidr: str, now: int, history: HistoryEvent, waf_only: bool = False) -> None:
        """pending → active, with the ``applied`` event and the time on the offender record. An
        active block that holds no rule number moves to the index's ``LIVE#WAF`` partition."""
        offender = {
            "Update": {
                "TableName": self.name,
                "Key": offender_key(cidr),
                "UpdateExpression": "SET applied = list_append(if_not_exists(applied, :none), :now), #ttl = :ttl",
                "ExpressionAttributeNames": {"#ttl": "ttl"},
                "ExpressionAttributeValues": {":none": [], ":now": [now], ":ttl": now + self.history_ttl_seconds},
            }
        }
        update = self._block_update(
            block_id,
            UpdateExpression="SET #st = :a, state_since = :now, gsi1pk = :live",
            ConditionExpression="#st = :p",
            ExpressionAttributeNames={"#st": "state"},
            ExpressionAttributeValues={
                ":a": "active",
                ":p": "pending",
                ":now": now,
                ":live": LIVE_WAF if waf_only else LIVE,
            },
        )
        self._transact("activate", block_id, [update, self.history_put(history, 0), offender])

    def begin_release_if_due(self, block_id: str, now: int) -> Block:
        """active → releasing, only if its expiry has passed (atomic against an extension)."""
        return self._update(
            "expire",
            block_id,
            UpdateExpression=(
                "SET #st = :r, state_since = :now, ending_state = :es, ending_reason = :es, gsi1pk = :live"
            ),
            ConditionExpression="#st = :a AND expires_at <= :now",
            ExpressionAttributeNames={"#st": "state"},
            ExpressionAttributeValues={":r": "releasing", ":a": "active", ":now": now, ":es": "expired", ":live": LIVE},
        )

    def _lock_delete(self, block: Block, location: str) -> dict[str, Any]:
        return {
            "Delete": {
                "TableName": self.name,
                "Key": lock_key(block.cidr, location),
                "ConditionExpression": "block_id = :id",
                "ExpressionAttributeValues": {":id": block.id},
            }
        }

    def fail_location(
        self, block: Block, location: str, keys: Sequence[str], reason: str, history: HistoryEvent
    ) -> Block:
        """A pending block gives up one account and Region (organization mode): the rule numbers it
        held there, and the address lock there, are given back, and ``failures`` says why, in one
        transaction with its event. Unchanged (with the block as it is) if it is no longer pending."""
        failures = {**block.failures, location: reason}
        names = {f"#k{i}": key for i, key in enumerate(keys)}
        removed = f" REMOVE {', '.join(f'#rules.{n}' for n in names)}" if names else ""
        update = self._block_update(
            block.id,
            UpdateExpression=f"SET failures = :f{removed}",
            ConditionExpression="#st = :p",
            ExpressionAttributeNames={"#st": "state", **({"#rules": "rules"} if names else {}), **names},
            ExpressionAttributeValues={":f": failures, ":p": "pending"},
        )
        given_back = [self.free_slot_item(key, block.rules[key], block.id) for key in keys if key in block.rules]
        writes = [update, *given_back, self._lock_delete(block, location), self.history_put(history, 0)]
        if self._transact("fail location", block.id, writes) is not None:
            # A number or the lock was taken over meanwhile (a sweep): give back what is still ours.
            for key in keys:
                if key in block.rules:
                    self.free_slot(key, block.rules[key], block.id)
            self.drop_lock(block.cidr, block.id, location)
            self._transact("fail location", block.id, [update, self.history_put(history, 0)])
        rules = {k: n for k, n in block.rules.items() if k not in keys}
        return block.model_copy(update={"rules": rules, "failures": failures})

    def finish(self, block: Block, final_state: str, reason: str, now: int, history: HistoryEvent) -> Block:
        """releasing → final state, in one transaction with its event, the rule numbers it gives back
        and its address lock; the block leaves the live index and gets its history TTL. Should one
        of those numbers or the lock no longer be the block's (a sweep repaired it meanwhile), each is
        given back on its own terms first."""
        update = self._block_update(
            block.id,
            UpdateExpression=(
                "SET #st = :f, ended_at = :now, state_since = :now, end_reason = :why, #ttl = :ttl "
                "REMOVE gsi1pk, gsi1sk, ending_state, ending_reason, ending_source"
            ),
            ConditionExpression="#st = :r",
            ExpressionAttributeNames={"#st": "state", "#ttl": "ttl"},
            ExpressionAttributeValues={
                ":f": final_state,
                ":r": "releasing",
                ":now": now,
                ":why": reason,
                ":ttl": now + self.history_ttl_seconds,
            },
        )
        given_back = [self.free_slot_item(key, number, block.id) for key, number in sorted(block.rules.items())]
        held = [loc for loc in block.locations if loc not in block.failures]
        locks = [self._lock_delete(block, loc) for loc in held]
        event = self.history_put(history, 0)
        if self._transact("finish", block.id, [update, *given_back, *locks, event]) is not None:
            for key, number in block.rules.items():
                self.free_slot(key, number, block.id)
            for loc in held:
                self.drop_lock(block.cidr, block.id, loc)
            self._transact("finish", block.id, [update, event])
        ended = {"state": final_state, "ended_at": now, "state_since": now, "end_reason": reason}
        return block.model_copy(update={**ended, "ending_state": None, "ending_reason": None, "ending_source": None})
