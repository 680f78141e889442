"""Rule-slot items: which block holds which rule number of each (NACL, direction)."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from autoblock.dal.aws import cancellation_reasons, error_code, translated
from autoblock.dal.items import Items, block_key, slot_key, to_block
from autoblock.models import Block, Unchanged

FOREIGN = "foreign"  # holder of a rule number that holds an entry autoblock did not write


class SlotItems(Items):
    def slots(self, key: str) -> dict[int, str]:
        """Rule number → holder block id, for one (NACL, direction)."""
        items = self.pages(
            "Query slots", self.table.query, KeyConditionExpression=Key("pk").eq(f"SLOT#{key}"), ConsistentRead=True
        )
        return {int(item["sk"]): str(item["block_id"]) for item in items}

    def new_slot(self, block: Block, key: str, number: int, now: int) -> dict[str, Any]:
        """A transaction item that takes ``number`` for ``block`` if nobody holds it."""
        slot = {**slot_key(key, number), "block_id": block.id, "cidr": block.cidr, "taken_at": now}
        return {"Put": {"TableName": self.name, "Item": slot, "ConditionExpression": "attribute_not_exists(pk)"}}

    def free_slot_item(self, key: str, number: int, block_id: str) -> dict[str, Any]:
        """A transaction item that gives ``number`` back if ``block_id`` holds it."""
        return {
            "Delete": {
                "TableName": self.name,
                "Key": slot_key(key, number),
                "ConditionExpression": "block_id = :id",
                "ExpressionAttributeValues": {":id": block_id},
            }
        }

    def _quarantine(self, block: Block, key: str, number: int, found: str) -> dict[str, Any]:
        """A transaction item that hands ``block``'s ``number`` to the foreign placeholder."""
        return {
            "Update": {
                "TableName": self.name,
                "Key": slot_key(key, number),
                "UpdateExpression": "SET block_id = :foreign, #found = :found",
                "ConditionExpression": "block_id = :id",
                "ExpressionAttributeNames": {"#found": "found"},
                "ExpressionAttributeValues": {":foreign": FOREIGN, ":found": found, ":id": block.id},
            }
        }

    def _current(self, block_id: str) -> Block | None:
        with translated("GetItem block"):
            item = self.table.get_item(Key=block_key(block_id), ConsistentRead=True).get("Item")
        return to_block(item) if item else None

    def take_slot(self, block: Block, key: str, number: int, now: int, evicted: dict[str, str] | None = None) -> bool:
        """Hold ``number`` for a pending block (recording ``evicted``, the block ended to free it). False
        if another block holds it; Unchanged if the block stopped being pending or already holds a
        slot there."""
        update = "SET #rules.#k = :n"
        values: dict[str, Any] = {":n": number, ":p": "pending"}
        if evicted is not None:
            update += ", evicted = list_append(if_not_exists(evicted, :none), :ev)"
            values.update({":none": [], ":ev": [evicted]})
        try:
            with translated("TransactWriteItems take slot"):
                self.client.transact_write_items(
                    TransactItems=[
                        self.new_slot(block, key, number, now),
                        {
                            "Update": {
                                "TableName": self.name,
                                "Key": block_key(block.id),
                                "UpdateExpression": update,
                                "ConditionExpression": "#st = :p AND attribute_not_exists(#rules.#k)",
                                "ExpressionAttributeNames": {"#rules": "rules", "#k": key, "#st": "state"},
                                "ExpressionAttributeValues": values,
                            }
                        },
                    ]
                )
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            slot_reason, block_reason = [*cancellation_reasons(exc), "None", "None"][:2]
            if block_reason == "ConditionalCheckFailed":
                raise Unchanged(self._current(block.id)) from None
            if slot_reason == "ConditionalCheckFailed":
                return False
            raise
        return True

    def quarantine_slot(self, block: Block, key: str, number: int, found: str) -> None:
        """Hand a rule number that holds a foreign entry to a placeholder holder, so no block takes it
        again until the sweeper sees it free, and take it off the pending block. Unchanged (with the
        block as the table has it) if the block no longer holds that number or is no longer pending:
        an earlier attempt already moved it."""
        try:
            self._quarantine_items(block, key, number, found)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException" and "ConditionalCheckFailed" in cancellation_reasons(
                exc
            ):
                raise Unchanged(self._current(block.id)) from None
            raise

    def _quarantine_items(self, block: Block, key: str, number: int, found: str) -> None:
        with translated("TransactWriteItems quarantine slot"):
            self.client.transact_write_items(
                TransactItems=[
                    self._quarantine(block, key, number, found),
                    {
                        "Update": {
                            "TableName": self.name,
                            "Key": block_key(block.id),
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
        item = {**slot_key(key, number), "block_id": claimant, "cidr": "", "taken_at": now}
        kwargs: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        if holder is not None:
            kwargs = {"ConditionExpression": "block_id = :h", "ExpressionAttributeValues": {":h": holder}}
        try:
            with translated("PutItem claim slot"):
                self.table.put_item(Item=item, **kwargs)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def move_slot(self, block: Block, key: str, old: int, new: int, found: str, now: int) -> bool:
        """Move an active block from ``old`` (quarantined: a foreign entry sits there) to the free ``new``."""
        try:
            with translated("TransactWriteItems move slot"):
                self.client.transact_write_items(
                    TransactItems=[
                        self.new_slot(block, key, new, now),
                        {
                            "Update": {
                                "TableName": self.name,
                                "Key": block_key(block.id),
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
        with translated("GetItem slot"):
            item = self.table.get_item(Key=slot_key(key, number), ConsistentRead=True).get("Item")
        return int(item["taken_at"]) if item else None

    def free_slot(self, key: str, number: int, block_id: str) -> bool:
        """Give a rule number back, if ``block_id`` still holds it (True if this call freed it)."""
        try:
            with translated("DeleteItem slot"):
                self.table.delete_item(
                    Key=slot_key(key, number),
                    ConditionExpression="block_id = :id",
                    ExpressionAttributeValues={":id": block_id},
                )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False
        return True
