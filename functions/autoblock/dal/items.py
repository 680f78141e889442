"""The table's item layout (keys and conversions) and what every part of the data layer shares.

One table, ``pk``/``sk``:

* ``BLOCK#<id>`` / ``BLOCK``: the block. While it is live (pending, active, releasing) it also
  carries ``gsi1pk = "LIVE"`` and ``gsi1sk = "<expires_at:010d>#<id>"``, so the ``live`` index holds
  live blocks only, ordered by expiry: the sweeper reads what is live or overdue, never history.
  A block that ended carries ``ttl`` and leaves the index. An active block that holds no rule number
  (WAF only) moves to ``gsi1pk = "LIVE#WAF"``: there can be tens of thousands, and the sweeper reads
  that partition only up to the present (the overdue), never whole.
* ``ADDR#<cidr>`` / ``ADDR``: the address lock, naming the one live block of an address. Created with
  the block in one transaction; removed when the block ends. In organization mode each account and
  Region (``logic.refs`` location) has its own: ``ADDR#<cidr>@<account>:<region>``; the stack's own
  account and Region keeps the plain key.
* ``OFFENDER#<cidr>`` / ``OFFENDER``: when the address's blocks were applied (``applied``, epoch
  seconds, kept for EscalationWindowDays), so a new block's escalation needs no history query.
  Written in the transaction that makes a block active; carries ``ttl``.
* ``SLOT#<nacl>|<direction>`` / ``<rule number:05d>``: a rule number held by a block. Created with a
  condition that it does not exist, in the transaction that records it on a pending block (the
  block's own creation, or the Reserve task's): two blocks can never hold one number.
* ``WAFSET#<set name>`` / ``<cidr>`` and ``/ #SET``, ``WAFRATE`` / ``WAFRATE``: a WAF IP set's
  members, its summary and the writers' pacing (``dal.waf``).
* ``HIST#<cidr>`` / ``<epoch ms:013d>#<block id>#<n><random>``: one event of a block's life
  (requested, applied, …), written in the transaction of the transition it records; carries ``ttl``
  (HistoryRetentionDays) and never ``gsi1pk``. An address's history is one Query, oldest first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from autoblock.dal.aws import dynamodb_table, translated
from autoblock.models import Block

LIVE_INDEX = "live"
LIVE = "LIVE"
LIVE_WAF = "LIVE#WAF"
_DESERIALIZER = TypeDeserializer()


def block_key(block_id: str) -> dict[str, str]:
    return {"pk": f"BLOCK#{block_id}", "sk": "BLOCK"}


def lock_key(cidr: str, location: str = "") -> dict[str, str]:
    return {"pk": f"ADDR#{cidr}@{location}" if location else f"ADDR#{cidr}", "sk": "ADDR"}


def offender_key(cidr: str) -> dict[str, str]:
    return {"pk": f"OFFENDER#{cidr}", "sk": "OFFENDER"}


def slot_key(key: str, number: int) -> dict[str, str]:
    return {"pk": f"SLOT#{key}", "sk": f"{number:05d}"}


def history_pk(cidr: str) -> str:
    return f"HIST#{cidr}"


def ms(epoch: float) -> str:
    return f"{int(epoch * 1000):013d}"


def plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; ours are all whole numbers."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def to_block(item: dict[str, Any]) -> Block:
    return Block.model_validate(plain(item))


def from_wire(item: dict[str, Any]) -> dict[str, Any]:
    """Items in a ClientError or a low-level answer come typed ({"S": …}); make them plain values."""
    return {k: _DESERIALIZER.deserialize(v) for k, v in item.items()}


class Items:
    """What each part of the table adapter shares: the table's name, its resource and client."""

    def __init__(self, table_name: str, history_ttl_seconds: int = 90 * 86400) -> None:
        self.name = table_name
        self.history_ttl_seconds = history_ttl_seconds

    @property
    def table(self) -> Any:
        return dynamodb_table(self.name)

    @property
    def client(self) -> Any:
        return self.table.meta.client

    def pages(self, what: str, query: Callable[..., Any], **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item a paginated Query returns, page after page."""
        while True:
            with translated(what):
                page = query(**kwargs)
            yield from page["Items"]
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
