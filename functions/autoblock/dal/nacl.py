"""Network ACL entries: the only code that reads or writes them.

Hands off what isn't ours: an entry is deleted only when its rule number is in the managed
range, it denies all protocols, and its CIDR is exactly the block's. Anything else at one of
our numbers is foreign and is never changed.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from autoblock.dal.aws import client, error_code, translated
from autoblock.errors import NaclQuotaExceeded
from autoblock.models import Entry, EntryExists


def _entry(nacl_id: str, raw: dict[str, Any]) -> Entry:
    return Entry(
        nacl_id=nacl_id,
        rule_number=int(raw["RuleNumber"]),
        egress=bool(raw["Egress"]),
        action=str(raw["RuleAction"]),
        protocol=str(raw.get("Protocol", "")),
        cidr=str(raw.get("CidrBlock") or raw.get("Ipv6CidrBlock") or ""),
    )


class Nacls:
    @property
    def ec2(self) -> Any:
        return client("ec2")

    def entries(self, nacl_ids: list[str]) -> dict[str, list[Entry]]:
        """Every entry of the given NACLs, in one DescribeNetworkAcls call."""
        with translated("DescribeNetworkAcls"):
            answer = self.ec2.describe_network_acls(NetworkAclIds=list(nacl_ids))
        return {
            acl["NetworkAclId"]: [_entry(acl["NetworkAclId"], e) for e in acl.get("Entries", [])]
            for acl in answer["NetworkAcls"]
        }

    def entry_at(self, nacl_id: str, rule_number: int, egress: bool) -> Entry | None:
        here = self.entries([nacl_id]).get(nacl_id, [])
        return next((e for e in here if e.rule_number == rule_number and e.egress == egress), None)

    def deny(self, nacl_id: str, rule_number: int, egress: bool, cidr: str, family: int) -> None:
        """Create a deny-all entry; EntryExists if the number is taken (it may be ours, from a retry)."""
        address = {"CidrBlock": cidr} if family == 4 else {"Ipv6CidrBlock": cidr}
        try:
            with translated("CreateNetworkAclEntry"):
                self.ec2.create_network_acl_entry(
                    NetworkAclId=nacl_id,
                    RuleNumber=rule_number,
                    Protocol="-1",
                    RuleAction="deny",
                    Egress=egress,
                    **address,
                )
        except ClientError as exc:
            if error_code(exc) == "NetworkAclEntryAlreadyExists":
                raise EntryExists(self.entry_at(nacl_id, rule_number, egress)) from None
            if error_code(exc) == "NetworkAclEntryLimitExceeded":
                raise NaclQuotaExceeded(f"{nacl_id} has reached its quota of IPv{family} rules per direction") from None
            raise

    def delete(self, entry: Entry) -> None:
        try:
            with translated("DeleteNetworkAclEntry"):
                self.ec2.delete_network_acl_entry(
                    NetworkAclId=entry.nacl_id, RuleNumber=entry.rule_number, Egress=entry.egress
                )
        except ClientError as exc:
            if error_code(exc) != "InvalidNetworkAclEntry.NotFound":
                raise
