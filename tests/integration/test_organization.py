"""Organization mode on the emulator: the administrator account (the stack's own, with its own NACLs)
and two member accounts, each with a configured NACL in two Regions and the member role. Blocks go
through the real handlers, the real workflow and AssumeRole into the members' own EC2."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from autoblock.handlers import sweeper
from autoblock_local.emulator import MEMBER_REGIONS, FakeLambdaContext, Stack, wait_until
from autoblock_local.invoke import call, event, settled
from tests.integration.conftest import TOKEN

IP, CIDR = "203.0.113.7", "203.0.113.7/32"
HOME, OTHER = MEMBER_REGIONS


@pytest.fixture
def org(deploy: Callable[..., Stack]) -> Stack:
    return deploy(members=2)


def everywhere(org: Stack) -> list[str]:
    return [*org.nacl_ids, *org.member_refs]


def denied(org: Stack, cidr: str = CIDR) -> dict[str, list[tuple[int, bool]]]:
    """NACL → our entries for ``cidr`` (rule number, egress), for every configured NACL."""
    return {ref: [(n, egress) for n, egress, c in org.managed(ref) if c == cidr] for ref in everywhere(org)}


def sweep() -> dict[str, Any]:
    return sweeper.lambda_handler(event("schedule_sweep.json"), FakeLambdaContext(function_name="SweeperFunction"))


def run_finding(
    org: Stack, account: str, region: str, name: str = "guardduty_ssh_bruteforce.json", subnets: list[str] | None = None
) -> dict[str, Any]:
    """A member's finding as the administrator's bus hands it to the workflow; the execution's output.
    ``subnets``: the affected instance's network interfaces are in these subnets."""
    finding = copy.deepcopy(event(name))
    if subnets is not None:
        (interface,) = finding["detail"]["resource"]["instanceDetails"]["networkInterfaces"]
        interfaces = [{**interface, "subnetId": subnet} for subnet in subnets]
        finding["detail"]["resource"]["instanceDetails"]["networkInterfaces"] = interfaces
    finding["detail"]["accountId"] = account
    finding["detail"]["region"] = finding["region"] = region
    finding["account"] = account
    started = org.sfn.start_execution(
        stateMachineArn=org.state_machine_arn, name=f"finding-{account}-{region}", input=json.dumps(finding)
    )
    result = org.finished(started["executionArn"])
    assert result["status"] == "SUCCEEDED", result
    return dict(json.loads(result["output"]))


def test_a_finding_from_member_a_in_region_2_blocks_only_in_as_nacl_in_region_2(org: Stack) -> None:
    a = org.members[0]

    output = run_finding(org, a.account, OTHER)

    (created,) = output["created"]
    assert settled(created["block_id"])["state"] == "active"
    assert denied(org) == {ref: [(10, False)] if ref == a.ref(OTHER) else [] for ref in everywhere(org)}


def test_a_finding_from_an_account_that_is_not_configured_is_skipped_and_nothing_is_blocked(org: Stack) -> None:
    output = run_finding(org, "999999999999", HOME)

    assert output["created"] == []
    assert output["skipped"] == [
        {
            "address": CIDR,
            "reason": f"account 999999999999 in {HOME} is not configured in MemberNetworkAclIds; "
            "not blocked anywhere else",
        }
    ]
    assert all(entries == [] for entries in denied(org).values())
    assert org.items("BLOCK#") == []


def test_an_api_block_lands_in_every_nacl_of_every_account_and_unblock_removes_each(org: Stack) -> None:
    # When an address is blocked with no accounts named
    status, body = call("api_create_block.json", TOKEN, body={"ip": IP})
    assert status == 202, body
    shown = settled(body["id"])

    # Then each configured NACL of each account and Region has its entry
    assert shown["state"] == "active"
    assert all(entries == [(10, False)] for entries in denied(org).values())
    places = sorted((r["account"], r["region"]) for r in shown["rules"])
    assert places == sorted(
        [("123456789012", HOME)] * len(org.nacl_ids) + [(m.account, r) for m in org.members for r in MEMBER_REGIONS]
    )

    # When it is unblocked, every entry goes, and nothing of the customer's own
    status, body = call("api_delete_block.json", TOKEN, block_id=body["id"])
    assert (status, body["state"]) == (200, "unblocked")
    assert all(entries == [] for entries in denied(org).values())
    assert {ref: org.foreign(ref) for ref in everywhere(org)} == org.baseline
    assert [i for i in org.items() if str(i["pk"]).startswith(("ADDR#", "SLOT#"))] == []


def test_a_block_expires_in_every_account(org: Stack) -> None:
    status, body = call("api_create_block.json", TOKEN, body={"ip": IP, "duration": 2})
    assert status == 202, body
    assert settled(body["id"])["state"] == "active"

    ended = wait_until(lambda: (b := settled(body["id"]))["state"] == "expired" and b, 20, "not expired")

    assert ended["end_reason"] == "expired"
    assert all(entries == [] for entries in denied(org).values())


def test_accounts_and_regions_narrow_an_api_block(org: Stack) -> None:
    b = org.members[1]
    status, body = call("api_create_block.json", TOKEN, body={"ip": IP, "accounts": [b.account], "regions": [HOME]})
    assert status == 202, body
    settled(body["id"])
    assert denied(org) == {ref: [(10, False)] if ref == b.ref(HOME) else [] for ref in everywhere(org)}


def test_an_account_that_is_not_configured_is_refused_with_422_and_nothing_written(org: Stack) -> None:
    status, body = call("api_create_block.json", TOKEN, body={"ip": IP, "accounts": ["999999999999"]})
    assert status == 422
    assert body["error"] == "invalid_request"
    assert body["fields"][0]["field"] == "accounts"
    assert org.items() == []


def test_a_member_whose_role_was_deleted_is_reported_and_does_not_stop_the_others(org: Stack) -> None:
    # Given member B's role is gone
    a, b = org.members
    b.session.client("iam").delete_role(RoleName="autoblock-member")

    # When an address is blocked everywhere
    status, body = call("api_create_block.json", TOKEN, body={"ip": IP})
    assert status == 202, body
    shown = settled(body["id"])

    # Then it is active in the administrator's and A's NACLs, and B is reported with the reason
    assert shown["state"] == "active"
    entries = denied(org)
    assert all(entries[ref] == [(10, False)] for ref in [*org.nacl_ids, *(a.ref(r) for r in MEMBER_REGIONS)])
    assert all(entries[b.ref(r)] == [] for r in MEMBER_REGIONS)
    failures = {(f["account"], f["region"]): f["reason"] for f in shown["failures"]}
    assert set(failures) == {(b.account, r) for r in MEMBER_REGIONS}
    assert all("AccessDenied" in reason and "autoblock-member" in reason for reason in failures.values())
    status, history = call("api_block_history.json", TOKEN, block_id=body["id"])
    assert [e["event"] for e in history["events"]].count("failed") == 2

    # and the sweeper reports B and carries on with the others
    report = sweep()
    assert report["repairs"].get("unreachable") == 2


def test_the_sweeper_repairs_an_entry_removed_by_hand_in_a_member_account(org: Stack) -> None:
    status, body = call("api_create_block.json", TOKEN, body={"ip": IP})
    assert status == 202, body
    settled(body["id"])
    a = org.members[0]
    a.ec2(OTHER).delete_network_acl_entry(NetworkAclId=a.nacls[OTHER], RuleNumber=10, Egress=False)
    assert denied(org)[a.ref(OTHER)] == []

    report = sweep()

    assert report["repairs"] == {"reapplied": 1}
    assert all(entries == [(10, False)] for entries in denied(org).values())


def test_status_shows_each_account_and_regions_slots(org: Stack) -> None:
    status, body = call("api_status.json", TOKEN)
    assert status == 200
    places = sorted({(s["account"], s["region"], s["nacl_id"]) for s in body["slots"]})
    expected = [("123456789012", HOME, n) for n in org.nacl_ids] + [
        (m.account, r, m.nacls[r]) for m in org.members for r in MEMBER_REGIONS
    ]
    assert places == sorted(expected)


def test_nacl_from_finding_blocks_in_the_instances_tagged_subnet_nacls_and_records_the_untagged_skip(
    deploy: Callable[..., Stack],
) -> None:
    # Given NaclFromFinding, and an instance of member A with interfaces in a subnet whose NACL is
    # tagged autoblock:managed=true and one whose NACL is not
    org = deploy(members=2, NaclFromFinding="true")
    a = org.members[0]
    subnets = [a.workload_subnets[OTHER], a.untagged_subnets[OTHER]]

    # When its finding arrives
    output = run_finding(org, a.account, OTHER, subnets=subnets)

    # Then the block is in A's configured NACL and the tagged one; the untagged NACL is never written
    (created,) = output["created"]
    assert settled(created["block_id"])["state"] == "active"
    workload, untagged = a.ref(OTHER, a.workload_nacls[OTHER]), a.ref(OTHER, a.untagged_nacls[OTHER])
    assert [n for n, _, c in org.managed(workload) if c == CIDR] == [10]
    assert [n for n, _, c in org.managed(untagged) if c == CIDR] == []
    assert denied(org) == {ref: [(10, False)] if ref == a.ref(OTHER) else [] for ref in everywhere(org)}
    assert output["nacls_skipped"] == [
        {"nacl": untagged, "reason": "not tagged autoblock:managed=true; autoblock never writes an untagged NACL"}
    ]


def test_nacl_from_finding_in_the_stacks_own_account_writes_only_a_tagged_nacl_and_its_block_is_kept_and_ended(
    deploy: Callable[..., Stack],
) -> None:
    # Given a single-account stack with NaclFromFinding, and an instance in a subnet whose NACL is tagged
    stack = deploy(NaclFromFinding="true")
    vpc = stack.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = stack.ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    tags = [{"ResourceType": "network-acl", "Tags": [{"Key": "autoblock:managed", "Value": "true"}]}]
    tagged = stack.ec2.create_network_acl(VpcId=vpc, TagSpecifications=tags)["NetworkAcl"]["NetworkAclId"]
    (acl,) = stack.ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [subnet]}])[
        "NetworkAcls"
    ]
    association = next(a["NetworkAclAssociationId"] for a in acl["Associations"] if a["SubnetId"] == subnet)
    stack.ec2.replace_network_acl_association(AssociationId=association, NetworkAclId=tagged)

    # When a finding on that instance arrives (the task writes the tagged NACL)
    output = run_finding(stack, "123456789012", HOME, subnets=[subnet])
    (created,) = output["created"]
    assert settled(created["block_id"])["state"] == "active"
    assert [(n, c) for n, _, c in stack.managed(tagged)] == [(10, CIDR)]

    # Then the sweeper puts back its entry when it is removed by hand
    stack.ec2.delete_network_acl_entry(NetworkAclId=tagged, RuleNumber=10, Egress=False)
    assert sweep()["repairs"] == {"reapplied": 1}
    assert [(n, c) for n, _, c in stack.managed(tagged)] == [(10, CIDR)]

    # and unblocking it through the API removes it there as everywhere else
    status, body = call("api_delete_block.json", TOKEN, block_id=created["block_id"])
    assert (status, body["state"]) == (200, "unblocked")
    assert stack.managed(tagged) == []
    assert all(stack.managed(n) == [] for n in stack.nacl_ids)
