"""The local stack in organization mode (``--accounts 2``): blocks through the CLI land in every
member account's NACL, seen through the emulated AWS endpoint as an operator in that account."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import LocalStack, banner, start_local_stack, stop_local_stack
from tests.e2e.test_cli_against_local_stack import as_json, autoblock

pytestmark = pytest.mark.e2e

MEMBERS = ("111111111111", "222222222222")
REGIONS = ("eu-west-1", "us-east-1")


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = start_local_stack(tmp_path_factory.mktemp("org"), "--accounts", "2")
    yield stack
    stop_local_stack(stack)


def member_ec2(stack: LocalStack, account: str, region: str) -> Any:
    """EC2 as an operator of ``account`` sees it (through the role AWS Organizations creates)."""
    sts = stack.aws("sts")
    arn = f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
    credentials = sts.assume_role(RoleArn=arn, RoleSessionName="operator")["Credentials"]
    return boto3.client(
        "ec2",
        endpoint_url=stack.aws_endpoint,
        region_name=region,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def member_denies(stack: LocalStack, account: str, region: str) -> set[str]:
    acls = member_ec2(stack, account, region).describe_network_acls(
        Filters=[{"Name": "tag:autoblock:managed", "Values": ["true"]}]
    )["NetworkAcls"]
    return {
        e.get("CidrBlock", "")
        for a in acls
        for e in a["Entries"]
        if e["RuleAction"] == "deny" and e["RuleNumber"] != 32767 and e["Protocol"] == "-1"
    }


def test_the_cli_blocks_in_every_member_account_and_region_and_unblocks_everywhere(org: LocalStack) -> None:
    assert any(line.startswith("  members       111111111111, 222222222222") for line in banner(org))

    created = as_json(autoblock(org, "block", "203.0.113.77", "--for", "30m", "-o", "json"))

    assert created["state"] == "active"
    assert {(r["account"], r["region"]) for r in created["rules"]} >= {(a, r) for a in MEMBERS for r in REGIONS}
    assert all("203.0.113.77/32" in member_denies(org, a, r) for a in MEMBERS for r in REGIONS)
    listed = autoblock(org, "list")
    assert listed.returncode == 0 and "account / Region" in listed.stdout
    status = autoblock(org, "status")
    assert status.returncode == 0 and "222222222222" in status.stdout and "eu-west-1" in status.stdout

    as_json(autoblock(org, "unblock", "203.0.113.77", "-o", "json"))
    assert all("203.0.113.77/32" not in member_denies(org, a, r) for a in MEMBERS for r in REGIONS)


def test_the_cli_narrows_a_block_to_one_account_and_region(org: LocalStack) -> None:
    created = as_json(
        autoblock(org, "block", "203.0.113.78", "--account", MEMBERS[1], "--region", "eu-west-1", "-o", "json")
    )
    assert {(r["account"], r["region"]) for r in created["rules"]} == {(MEMBERS[1], "eu-west-1")}
    assert "203.0.113.78/32" in member_denies(org, MEMBERS[1], "eu-west-1")
    assert "203.0.113.78/32" not in member_denies(org, MEMBERS[0], "eu-west-1")
    as_json(autoblock(org, "unblock", "203.0.113.78", "-o", "json"))
