"""The DynamoDB table: blocks, address locks and rule slots.

Item layout (one table, ``pk``/``sk``):

* ``BLOCK#<id>`` / ``BLOCK``: the block. While it is live (pending, active, releasing) it also
  carries ``gsi1pk = "LIVE"`` and ``gsi1sk = "<expires_at:010d>#<id>"``, so the ``live`` index holds
  live blocks only, ordered by expiry: the sweeper reads what is live or overdue, never history.
  A block that ended carries ``ttl`` and leaves the index.
* ``ADDR#<cidr>`` / ``ADDR``: the address lock, naming the one live block of an address. Created with
  the block in one transaction; removed when the block ends.
* ``SLOT#<nacl>|<direction>`` / ``<rule number:05d>``: a rule number held by a block. Created with a
  condition that it does not exist, in the same transaction that records it on a pending block:
  two blocks can never hold one number, and a block that stopped being pending can take none.
* ``HIST#<cidr>`` / ``<epoch ms:013d>#<block id>#<n><random>``: one event of a block's life
  (requested, applied, …). Written in the transaction of the transition it records, so a
  transition is never without its event nor an event without its transition; carries ``ttl``
  (HistoryRetentionDays) and never ``gsi1pk``: the sweeper, which reads the ``live`` index and the
  slot partitions, never reads history. An address's history is one Query, oldest first; a block's
  is the same Query from its creation on, filtered on its id.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, cast

from boto3.dynamodb.conditions import Key
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from autoblock.dal.aws import dynamodb_table, error_code, is_transient, transient
from autoblock.errors import Unchanged
from autoblock.models import Block, HistoryEvent

LIVE_INDEX = "live"
_DESERIALIZER = TypeDeserializer()
LIVE = "LIVE"
FOREIGN = "foreign"  # holder of a rule number that holds an entry autoblock did not write


def _block_key(block_id: str) -> dict[str, str]:
    return {"pk": f"BLOCK#{block_id}", "sk": "BLOCK"}


def _lock_key(cidr: str) -> dict[str, str]:
    return {"pk": f"ADDR#{cidr}", "sk": "ADDR"}


def _slot_key(key: str, number: int) -> dict[str, str]:
    return {"pk": f"SLOT#{key}", "sk": f"{number:05d}"}


def _history_pk(cidr: str) -> str:
    return f"HIST#{cidr}"


def _ms(epoch: float) -> str:
    return f"{int(epoch * 1000):013d}"


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _block(item: dict[str, Any]) -> Block:
    return Block.model_validate(_plain(item))


def _cancelled_reasons(exc: ClientError) -> list[str]:
    return [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]


@contextmanager
def _aws(what: str) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        if is_transient(exc):
            raise transient(exc, what) from exc
        raise


class BlockTable:
    def __init__(self, table_name: str, history_ttl_seconds: int = 90 * 86400) -> None:
        self.name = table_name
        self.history_ttl_seconds = history_ttl_seconds

    @property
    def table(self) -> Any:
        return dynamodb_table(self.name)

    @property
    def client(self) -> Any:
        return self.table.meta.client

    # -- history --------------------------------------------------------------------------------

    def _history_put(self, event: HistoryEvent, n: int) -> dict[str, Any]:
        """A transaction item writing ``event`` (``n`` orders the events of one transaction)."""
        item = {
            "pk": _history_pk(event.cidr),
            "sk": f"{_ms(event.at)}#{event.block_id}#{n}{secrets.token_hex(3)}",
            **event.model_dump(exclude_none=True),
            "at": int(event.at),
            "ttl": int(event.at) + self.history_ttl_seconds,
        }
        return {"Put": {"TableName": self.name, "Item": item}}

    def add_history(self, *events: HistoryEvent) -> None:
        """Write events that belong to no transition of this table (sweeper repairs, refusals)."""
        if events:
            with _aws("TransactWriteItems history"):
                self.client.transact_write_items(TransactItems=[self._history_put(e, n) for n, e in enumerate(events)])

    def history(self, cidr: str, since: float | None = None, block_id: str | None = None) -> list[HistoryEvent]:
        """The events of an address (from ``since`` on, of one block only if given), oldest first."""
        condition: Any = Key("pk").eq(_history_pk(cidr))
        if since is not None:
            condition = condition & Key("sk").gte(_ms(since))
        kwargs: dict[str, Any] = {"KeyConditionExpression": condition}
        if block_id is not None:
            kwargs.update(FilterExpression="block_id = :id", ExpressionAttributeValues={":id": block_id})
        events: list[HistoryEvent] = []
        while True:
            with _aws("Query history"):
                page = self.table.query(**kwargs)
            events.extend(HistoryEvent.model_validate(_plain(item)) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return events
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- blocks -------------------------------------------------------------------------------

    def get(self, block_id: str) -> Block | None:
        with _aws("GetItem block"):
            item = self.table.get_item(Key=_block_key(block_id), ConsistentRead=True).get("Item")
        return _block(item) if item else None

    def get_many(self, block_ids: list[str]) -> list[Block]:
        blocks: list[Block] = []
        for i in range(0, len(block_ids), 100):
            keys = [_block_key(b) for b in dict.fromkeys(block_ids[i : i + 100])]
            request: dict[str, Any] = {self.name: {"Keys": keys, "ConsistentRead": True}}
            while request:
                with _aws("BatchGetItem blocks"):
                    answer = self.client.batch_get_item(RequestItems=request)
                blocks.extend(_block(item) for item in answer["Responses"].get(self.name, []))
                request = answer.get("UnprocessedKeys") or {}
        return blocks

    def create(self, block: Block, history: Sequence[HistoryEvent] = ()) -> bool:
        """Write a new pending block, its address lock and its first events together; False if the
        address is locked."""
        item = {
            **_block_key(block.id),
            **block.model_dump(exclude_none=True),
            "gsi1pk": LIVE,
            "gsi1sk": f"{block.expires_at:010d}#{block.id}",
        }
        lock = {**_lock_key(block.cidr), "block_id": block.id, "created_at": block.created_at}
        try:
            with _aws("TransactWriteItems create block"):
                self.client.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": self.name,
                                "Item": item,
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                        {
                            "Put": {
                                "TableName": self.name,
                                "Item": lock,
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                        *(self._history_put(e, n) for n, e in enumerate(history)),
                    ]
                )
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException" and "ConditionalCheckFailed" in _cancelled_reasons(
                exc
            ):
                return False
            raise
        return True

    def record_dry_run(self, block: Block, history: Sequence[HistoryEvent]) -> None:
        """A dry-run block: ended as it is written, outside the live index, no lock, no slot."""
        ttl = block.created_at + self.history_ttl_seconds
        item = {**_block_key(block.id), **block.model_dump(exclude_none=True), "ttl": ttl}
        with _aws("TransactWriteItems dry run"):
            self.client.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": self.name, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
                    *(self._history_put(e, n) for n, e in enumerate(history)),
                ]
            )

    def lock_holder(self, cidr: str) -> str | None:
        with _aws("GetItem address lock"):
            item = self.table.get_item(Key=_lock_key(cidr), ConsistentRead=True).get("Item")
        return str(item["block_id"]) if item else None

    def drop_lock(self, cidr: str, block_id: str) -> None:
        """Remove the address lock if ``block_id`` still holds it."""
        try:
            with _aws("DeleteItem address lock"):
                self.table.delete_item(
                    Key=_lock_key(cidr),
                    ConditionExpression="block_id = :id",
                    ExpressionAttributeValues={":id": block_id},
                )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def _update(self, what: str, block_id: str, history: HistoryEvent | None = None, **kwargs: Any) -> Block:
        """A conditional UpdateItem on a block; Unchanged (with the block as it is) if the condition fails.
        With ``history``: the update and the event's item in one transaction."""
        if history is not None:
            return self._update_recorded(what, block_id, history, kwargs)
        try:
            with _aws(f"UpdateItem {what}"):
                answer = self.table.update_item(
                    Key=_block_key(block_id),
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    **kwargs,
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                old = cast(dict[str, Any] | None, exc.response.get("Item"))
                raise Unchanged(_block(self.client_item(old)) if old else None) from None
            raise
        return _block(answer["Attributes"])

    def _update_recorded(self, what: str, block_id: str, history: HistoryEvent, kwargs: dict[str, Any]) -> Block:
        update = {"TableName": self.name, "Key": _block_key(block_id), **kwargs}
        try:
            with _aws(f"TransactWriteItems {what}"):
                self.client.transact_write_items(TransactItems=[{"Update": update}, self._history_put(history, 0)])
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException" and _cancelled_reasons(exc)[:1] == [
                "ConditionalCheckFailed"
            ]:
                raise Unchanged(self.get(block_id)) from None
            raise
        block = self.get(block_id)  # a transaction returns no values
        if block is None:
            raise Unchanged(None)
        return block

    def extend(self, block_id: str, expires_at: int, history: HistoryEvent | None = None) -> Block:
        """Move a live block's expiry later; raise Unchanged if it is not pending/active or not earlier."""
        return self._update(
            "extend",
            block_id,
            history,
            UpdateExpression="SET expires_at = :e, gsi1sk = :s",
            ConditionExpression="#st IN (:p, :a) AND expires_at < :e",
            ExpressionAttributeNames={"#st": "state"},
            ExpressionAttributeValues={
                ":e": expires_at,
                ":s": f"{expires_at:010d}#{block_id}",
                ":p": "pending",
                ":a": "active",
            },
        )

    def client_item(self, item: dict[str, Any]) -> dict[str, Any]:
        """Items in a ClientError come in the low-level format; turn them into plain values."""
        return {k: _DESERIALIZER.deserialize(v) for k, v in item.items()}

    def transition(
        self,
        block_id: str,
        from_states: frozenset[str],
        to_state: str,
        now: int,
        ending: tuple[str, str, str | None] | None = None,
        history: HistoryEvent | None = None,
    ) -> Block:
        """Move a block to ``to_state`` if it is in one of ``from_states``; raise Unchanged otherwise.
        ``ending`` (state, reason, source) records how a block moving to releasing is to end;
        ``history`` is the event the transition writes with it."""
        names = {f":f{i}": s for i, s in enumerate(sorted(from_states))}
        values: dict[str, Any] = {":to": to_state, ":now": now, **names}
        update = "SET #st = :to, state_since = :now"
        if ending is not None:
            update += ", ending_state = :es, ending_reason = :er"
            values.update({":es": ending[0], ":er": ending[1]})
            if ending[2] is not None:
                update += ", ending_source = :eo"
                values[":eo"] = ending[2]
        return self._update(
            to_state,
            block_id,
            history,
            UpdateExpression=update,
            ConditionExpression=f"#st IN ({', '.join(names)})",
            ExpressionAttributeNames={"#st": "state"},
            ExpressionAttributeValues=values,
        )

    def begin_release_if_due(self, block_id: str, now: int) -> Block:
        """active → releasing, only if its expiry has passed (atomic against an extension)."""
        return self._update(
            "expire",
            block_id,
            UpdateExpression="SET #st = :r, state_since = :now, ending_state = :es, ending_reason = :es",
            ConditionExpression="#st = :a AND expires_at <= :now",
            ExpressionAttributeNames={"#st": "state"},
            ExpressionAttributeValues={":r": "releasing", ":a": "active", ":now": now, ":es": "expired"},
        )

    def finish(
        self, block: Block, final_state: str, reason: str, now: int, history: HistoryEvent | None = None
    ) -> Block:
        """releasing → final state; the block leaves the live index and gets its history TTL."""
        return self._update(
            "finish",
            block.id,
            history,
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

    def live(self) -> list[Block]:
        """Every live block, soonest expiry first, read from the sparse ``live`` index."""
        blocks: list[Block] = []
        kwargs: dict[str, Any] = {"IndexName": LIVE_INDEX, "KeyConditionExpression": Key("gsi1pk").eq(LIVE)}
        while True:
            with _aws("Query live"):
                page = self.table.query(**kwargs)
            blocks.extend(_block(item) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return blocks
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- rule slots -----------------------------------------------------------------------------

    def slots(self, key: str) -> dict[int, str]:
        """Rule number → holder block id, for one (NACL, direction)."""
        taken: dict[int, str] = {}
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(f"SLOT#{key}"), "ConsistentRead": True}
        while True:
            with _aws("Query slots"):
                page = self.table.query(**kwargs)
            taken.update({int(item["sk"]): str(item["block_id"]) for item in page["Items"]})
            if "LastEvaluatedKey" not in page:
                return taken
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _new_slot(self, block: Block, key: str, number: int, now: int) -> dict[str, Any]:
        """A transaction item that takes ``number`` for ``block`` if nobody holds it."""
        slot = {**_slot_key(key, number), "block_id": block.id, "cidr": block.cidr, "taken_at": now}
        return {"Put": {"TableName": self.name, "Item": slot, "ConditionExpression": "attribute_not_exists(pk)"}}

    def _quarantine(self, block: Block, key: str, number: int, found: str) -> dict[str, Any]:
        """A transaction item that hands ``block``'s ``number`` to the foreign placeholder."""
        return {
            "Update": {
                "TableName": self.name,
                "Key": _slot_key(key, number),
                "UpdateExpression": "SET block_id = :foreign, #found = :found",
                "ConditionExpression": "block_id = :id",
                "ExpressionAttributeNames": {"#found": "found"},
                "ExpressionAttributeValues": {":foreign": FOREIGN, ":found": found, ":id": block.id},
            }
        }

    def take_slot(self, block: Block, key: str, number: int, now: int) -> bool:
        """Hold ``number`` for a pending block. False if another block holds it; Unchanged if the
        block stopped being pending or already holds a slot there."""
        try:
            with _aws("TransactWriteItems take slot"):
                self.client.transact_write_items(
                    TransactItems=[
                        self._new_slot(block, key, number, now),
                        {
                            "Update": {
                                "TableName": self.name,
                                "Key": _block_key(block.id),
                                "UpdateExpression": "SET #rules.#k = :n",
                                "ConditionExpression": "#st = :p AND attribute_not_exists(#rules.#k)",
                                "ExpressionAttributeNames": {"#rules": "rules", "#k": key, "#st": "state"},
                                "ExpressionAttributeValues": {":n": number, ":p": "pending"},
                            }
                        },
                    ]
                )
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            slot_reason, block_reason = [*_cancelled_reasons(exc), "None", "None"][:2]
            if block_reason == "ConditionalCheckFailed":
                raise Unchanged(self.get(block.id)) from None
            if slot_reason == "ConditionalCheckFailed":
                return False
            raise
        return True

    def quarantine_slot(self, block: Block, key: str, number: int, found: str) -> None:
        """Hand a rule number that holds a foreign entry to a placeholder holder, so no block takes it
        again until the sweeper sees it free, and take it off the pending block."""
        with _aws("TransactWriteItems quarantine slot"):
            self.client.transact_write_items(
                TransactItems=[
                    self._quarantine(block, key, number, found),
                    {
                        "Update": {
                            "TableName": self.name,
                            "Key": _block_key(block.id),
                            "UpdateExpression": "REMOVE #rules.#k",
                            "ConditionExpression": "#st = :p",
                            "ExpressionAttributeNames": {"#rules": "rules", "#k": key, "#st": "state"},
                            "ExpressionAttributeValues": {":p": "pending"},
                        }
                    },
                ]
            )

    def claim_slot(self, key: str, number: int, holder: str | None, claimant: str, now: int) -> bool:
        """Take a rule number for ``claimant`` if it is free (``holder`` None) or still held by ``holder``."""
        item = {**_slot_key(key, number), "block_id": claimant, "cidr": "", "taken_at": now}
        kwargs: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        if holder is not None:
            kwargs = {"ConditionExpression": "block_id = :h", "ExpressionAttributeValues": {":h": holder}}
        try:
            with _aws("PutItem claim slot"):
                self.table.put_item(Item=item, **kwargs)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def move_slot(self, block: Block, key: str, old: int, new: int, found: str, now: int) -> bool:
        """Move an active block from ``old`` (quarantined: a foreign entry sits there) to the free ``new``."""
        try:
            with _aws("TransactWriteItems move slot"):
                self.client.transact_write_items(
                    TransactItems=[
                        self._new_slot(block, key, new, now),
                        {
                            "Update": {
                                "TableName": self.name,
                                "Key": _block_key(block.id),
                                "UpdateExpression": "SET #rules.#k = :new",
                                "ConditionExpression": "#st = :a AND #rules.#k = :old",
                                "ExpressionAttributeNames": {"#rules": "rules", "#k": key, "#st": "state"},
                                "ExpressionAttributeValues": {":new": new, ":old": old, ":a": "active"},
                            }
                        },
                        self._quarantine(block, key, old, found),
                    ]
                )
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                return False
            raise
        return True

    def slot_taken_at(self, key: str, number: int) -> int | None:
        with _aws("GetItem slot"):
            item = self.table.get_item(Key=_slot_key(key, number), ConsistentRead=True).get("Item")
        return int(item["taken_at"]) if item else None

    def free_slot(self, key: str, number: int, block_id: str) -> bool:
        """Give a rule number back, if ``block_id`` still holds it (True if this call freed it)."""
        try:
            with _aws("DeleteItem slot"):
                self.table.delete_item(
                    Key=_slot_key(key, number),
                    ConditionExpression="block_id = :id",
                    ExpressionAttributeValues={":id": block_id},
                )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False
        return True
