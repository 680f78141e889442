"""History that no sweep should read: ended blocks written straight into the table (the benchmark's
sweep-cost rows and the sweeper test use the same items)."""

from __future__ import annotations

from autoblock_local.emulator import Stack


def write_history(stack: Stack, first: int, last: int) -> None:
    """Ended blocks number first … last-1, written straight into the table: the history a sweep
    must not read."""
    with stack.ddb.Table(stack.table_name).batch_writer() as batch:
        for i in range(first, last):
            block_id = f"{i:032x}"
            batch.put_item(
                Item={
                    "pk": f"BLOCK#{block_id}",
                    "sk": "BLOCK",
                    "id": block_id,
                    "cidr": f"198.51.100.{i % 250}/32",
                    "family": 4,
                    "direction": "ingress",
                    "nacl_ids": stack.nacl_ids,
                    "state": "expired",
                    "created_at": 1_700_000_000 + i,
                    "expires_at": 1_700_000_600 + i,
                    "rules": {},
                    "ttl": 1_900_000_000,
                }
            )
