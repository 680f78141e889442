"""Network ACL entries: the only code that reads or writes them.

Hands off what isn't ours: an entry is deleted only when its rule number is in the managed
range, it denies all protocols, and its CIDR is exactly the block's. Anything else at one of
our numbers is foreign and is never changed.

A NACL is named by its reference (``logic.refs``): the stack's own ones by id, with the functions'
own role; a member account's (or another Region's) as ``account:region:acl-id``, through the member
role of that account (``MemberRoleName``), assumed for 15 minutes and reused until a minute before
it lapses. A member whose role is missing or refuses, or whose NACL is gone, is ``MemberUnreachable``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import ClientError

from autoblock.dal.aws import CONFIG, client, error_code, is_transient, translated
from autoblock.errors import MemberUnreachable, NaclQuotaExceeded
from autoblock.logic import refs
from autoblock.models import Entry, EntryExists

SESSION_SECONDS = 900
RENEW_BEFORE_SECONDS = 60
MANAGED_TAG = "autoblock:managed"
# What a member account answers when our role may not act there, or the NACL is not there.
UNREACHABLE_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthFailure",
        "InvalidClientTokenId",
        "InvalidNetworkAclID.NotFound",
        "InvalidRouteTableID.NotFound",  # what moto answers for an unknown NACL id
        "RegionDisabledException",
        "OptInRequired",
    }
)


def _entry(nacl_id: str, raw: dict[str, Any]) -> Entry:
    return Entry(
        nacl_id=nacl_id,
        rule_number=int(raw["RuleNumber"]),
        egress=bool(raw["Egress"]),
        action=str(raw["RuleAction"]),
        protocol=str(raw.get("Protocol", "")),
        cidr=str(raw.get("CidrBlock") or raw.get("Ipv6CidrBlock") or ""),
    )


class MemberClients:
    """EC2 clients acting in member accounts through their member role, one per (account, Region),
    renewed before their credentials lapse. Thread-safe."""

    def __init__(self, role_name: str, partition: str = "aws", clock: Callable[[], float] = time.time) -> None:
        self.role_name = role_name
        self.partition = partition
        self.clock = clock
        self._clients: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def role_arn(self, account: str) -> str:
        return f"arn:{self.partition}:iam::{account}:role/{self.role_name}"

    def ec2(self, location: str) -> Any:
        with self._lock:
            cached = self._clients.get(location)
        if cached is not None and cached[0] - RENEW_BEFORE_SECONDS > self.clock():
            return cached[1]
        account, region = location.split(":", 1)
        arn = self.role_arn(account)
        try:
            with translated("AssumeRole member"):
                answer = client("sts").assume_role(
                    RoleArn=arn, RoleSessionName="autoblock", DurationSeconds=SESSION_SECONDS
                )
        except ClientError as exc:
            raise MemberUnreachable(
                location, f"cannot assume {arn}: {error_code(exc)} (is member-role.yaml deployed there?)"
            ) from None
        credentials = answer["Credentials"]
        ec2 = boto3.client(
            "ec2",
            region_name=region,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            config=CONFIG,
        )
        with self._lock:
            self._clients[location] = (self.clock() + SESSION_SECONDS, ec2)
        return ec2

    def forget(self, location: str) -> None:
        with self._lock:
            self._clients.pop(location, None)


class Nacls:
    def __init__(self, role_name: str = "autoblock-member", partition: str = "aws") -> None:
        self.members = MemberClients(role_name, partition)

    def _ec2(self, location: str) -> Any:
        return client("ec2") if location == refs.HOME else self.members.ec2(location)

    def _call(self, location: str, what: str, call: Callable[[Any], Any]) -> Any:
        """One EC2 call where ``location`` is; a member that refuses is MemberUnreachable."""
        try:
            with translated(what):
                return call(self._ec2(location))
        except ClientError as exc:
            if location == refs.HOME or is_transient(exc) or error_code(exc) not in UNREACHABLE_CODES:
                raise
            self.members.forget(location)  # a role re-deployed meanwhile gets a fresh session next time
            raise MemberUnreachable(location, f"{refs.describe(location)}: {what}: {error_code(exc)}") from None

    def entries(self, nacl_ids: list[str]) -> dict[str, list[Entry]]:
        """Every entry of the given NACLs, keyed by reference: one DescribeNetworkAcls per location."""
        found: dict[str, list[Entry]] = {}
        for location, here in refs.by_location(nacl_ids).items():
            ids = {refs.parse(r).acl_id: r for r in here}
            for acl in self._describe(location, list(ids)):
                ref = ids[acl["NetworkAclId"]]
                found[ref] = [_entry(ref, e) for e in acl.get("Entries", [])]
        return found

    def _describe(self, location: str, acl_ids: list[str]) -> list[dict[str, Any]]:
        answer = self._call(
            location, "DescribeNetworkAcls", lambda ec2: ec2.describe_network_acls(NetworkAclIds=acl_ids)
        )
        return list(answer["NetworkAcls"])

    def entry_at(self, nacl_id: str, rule_number: int, egress: bool) -> Entry | None:
        here = self.entries([nacl_id]).get(nacl_id, [])
        return next((e for e in here if e.rule_number == rule_number and e.egress == egress), None)

    def deny(self, nacl_id: str, rule_number: int, egress: bool, cidr: str, family: int) -> None:
        """Create a deny-all entry; EntryExists if the number is taken (it may be ours, from a retry)."""
        address = {"CidrBlock": cidr} if family == 4 else {"Ipv6CidrBlock": cidr}
        ref = refs.parse(nacl_id)
        try:
            self._call(
                ref.location,
                "CreateNetworkAclEntry",
                lambda ec2: ec2.create_network_acl_entry(
                    NetworkAclId=ref.acl_id,
                    RuleNumber=rule_number,
                    Protocol="-1",
                    RuleAction="deny",
                    Egress=egress,
                    **address,
                ),
            )
        except ClientError as exc:
            if error_code(exc) == "NetworkAclEntryAlreadyExists":
                raise EntryExists(self.entry_at(nacl_id, rule_number, egress)) from None
            if error_code(exc) == "NetworkAclEntryLimitExceeded":
                raise NaclQuotaExceeded(f"{nacl_id} has reached its quota of IPv{family} rules per direction") from None
            raise

    def delete(self, entry: Entry) -> None:
        ref = refs.parse(entry.nacl_id)
        try:
            self._call(
                ref.location,
                "DeleteNetworkAclEntry",
                lambda ec2: ec2.delete_network_acl_entry(
                    NetworkAclId=ref.acl_id, RuleNumber=entry.rule_number, Egress=entry.egress
                ),
            )
        except ClientError as exc:
            if error_code(exc) != "InvalidNetworkAclEntry.NotFound":
                raise

    def managed_for_subnets(self, location: str, subnet_ids: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
        """The NACLs associated with ``subnet_ids`` at ``location``: the references of those tagged
        ``autoblock:managed=true``, and each other one with why it is left alone."""
        answer = self._call(
            location,
            "DescribeNetworkAcls subnets",
            lambda ec2: ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": subnet_ids}]),
        )
        managed: list[str] = []
        skipped: list[tuple[str, str]] = []
        for acl in answer["NetworkAcls"]:
            acl_id = str(acl["NetworkAclId"])
            tags = {t["Key"]: t["Value"] for t in acl.get("Tags", [])}
            ref = acl_id if location == refs.HOME else f"{location}:{acl_id}"
            if tags.get(MANAGED_TAG) == "true":
                managed.append(ref)
            else:
                skipped.append((ref, f"not tagged {MANAGED_TAG}=true; autoblock never writes an untagged NACL"))
        return managed, skipped
