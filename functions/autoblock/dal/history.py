"""History items: one per event of a block's life (see ``dal.items`` for the layout)."""

from __future__ import annotations

import secrets
from typing import Any

from boto3.dynamodb.conditions import Key

from autoblock.dal.aws import translated
from autoblock.dal.items import Items, history_pk, ms, plain
from autoblock.models import HistoryEvent


class HistoryItems(Items):
    def history_put(self, event: HistoryEvent, n: int) -> dict[str, Any]:
        """A transaction item writing ``event`` (``n`` orders the events of one transaction)."""
        item = {
            "pk": history_pk(event.cidr),
            "sk": f"{ms(event.at)}#{event.block_id}#{n}{secrets.token_hex(3)}",
            **event.model_dump(exclude_none=True),
            "at": int(event.at),
            "ttl": int(event.at) + self.history_ttl_seconds,
        }
        return {"Put": {"TableName": self.name, "Item": item}}

    def add_history(self, *events: HistoryEvent) -> None:
        """Write events that belong to no transition of this table (sweeper repairs, refusals)."""
        if events:
            with translated("TransactWriteItems history"):
                self.client.transact_write_items(TransactItems=[self.history_put(e, n) for n, e in enumerate(events)])

    def history(self, cidr: str, since: float | None = None, block_id: str | None = None) -> list[HistoryEvent]:
        """The events of an address (from ``since`` on, of one block only if given), oldest first."""
        condition: Any = Key("pk").eq(history_pk(cidr))
        if since is not None:
            condition = condition & Key("sk").gte(ms(since))
        kwargs: dict[str, Any] = {"KeyConditionExpression": condition}
        if block_id is not None:
            kwargs.update(FilterExpression="block_id = :id", ExpressionAttributeValues={":id": block_id})
        return [HistoryEvent.model_validate(plain(i)) for i in self.pages("Query history", self.table.query, **kwargs)]
