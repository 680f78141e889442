"""The design autoblock replaces, written for the benchmark only: the 2017 seed's two Lambdas.

``blacklist(ip, acl_id, expiry_time, rule_limit)`` scans its table for the rule numbers in use,
takes the next one, writes the NACL deny entry and a row; ``handle_expiry()``, run once a minute by
a schedule, scans the table and removes every expired row's entry and row. No reservation, no
conditional write, no compensation: what the benchmark measures against.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import boto3
from botocore.exceptions import ClientError

TABLE = "seed-blacklist"
RULE_START = 10


def create_table() -> None:
    boto3.client("dynamodb").create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "ip", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "ip", "KeyType": "HASH"}],
    )


class Seed:
    def __init__(self) -> None:
        self.ec2 = boto3.client("ec2")
        self.table = boto3.resource("dynamodb").Table(TABLE)

    def _rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = self.table.scan(**kwargs)
            rows += page["Items"]
            if "LastEvaluatedKey" not in page:
                return rows
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def blacklist(self, ip: str, acl_id: str, expiry_time: int, rule_limit: int) -> str:
        """The seed's handler: returns 'blocked', 'exists', 'full' or the EC2 error code."""
        rows = self._rows()
        if any(r["ip"] == ip for r in rows):
            return "exists"
        used = {int(r["rule"]) for r in rows}
        if len(used) >= rule_limit:
            return "full"
        rule = next(n for n in range(RULE_START, RULE_START + rule_limit + len(used) + 1) if n not in used)
        try:
            self.ec2.create_network_acl_entry(
                NetworkAclId=acl_id,
                RuleNumber=rule,
                Protocol="-1",
                RuleAction="deny",
                Egress=False,
                CidrBlock=f"{ip}/32",
            )
        except ClientError as exc:
            return str(exc.response["Error"]["Code"])
        self.table.put_item(Item={"ip": ip, "rule": rule, "acl": acl_id, "expires": expiry_time})
        return "blocked"

    def handle_expiry(self, now: float | None = None) -> int:
        """The seed's scheduled sweep: returns the number of rows it read."""
        now = time.time() if now is None else now
        rows = self._rows()
        for row in rows:
            if int(row["expires"]) <= now:
                with contextlib.suppress(ClientError):
                    self.ec2.delete_network_acl_entry(
                        NetworkAclId=row["acl"], RuleNumber=int(row["rule"]), Egress=False
                    )
                self.table.delete_item(Key={"ip": row["ip"]})
        return len(rows)
