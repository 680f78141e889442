"""The real ASL on moto, started through the real API handler, against moto's EC2 and DynamoDB."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from autoblock.dal.nacl import Nacls
from autoblock_local.invoke import call, isolated_api, settled
from tests.integration.conftest import TOKEN, Faults, Stack, wait_until

HAPPY_PATH = [
    "Validate",
    "Reserve",
    "Apply",
    "IsActive",
    "WaitUntilExpiry",
    "Expire",
    "StillActive",
    "Released",
]


def block(ip: str, duration: int = 3, direction: str = "ingress", **extra: Any) -> tuple[int, Any]:
    return call("api_create_block.json", TOKEN, body={"ip": ip, "duration": duration, "direction": direction, **extra})


def assert_foreign_untouched(stack: Stack) -> None:
    for nacl_id in stack.nacl_ids:
        assert stack.foreign(nacl_id) == stack.baseline[nacl_id], (
            f"rules outside the managed range changed in {nacl_id}"
        )


def assert_nothing_left(stack: Stack) -> None:
    """No entry, rule number or lock left. Blocks (BLOCK#) and their history (HIST#) stay, on purpose."""
    for nacl_id in stack.nacl_ids:
        assert stack.managed(nacl_id) == []
    assert stack.items("SLOT#") == []
    assert stack.items("ADDR#") == []
    assert_foreign_untouched(stack)


def test_block_is_applied_in_every_nacl_then_removed_on_time(stack: Stack) -> None:
    # When
    status, body = block("203.0.113.7", duration=5, reason="ssh brute force")
    # Then: answered at once, pending, with the rule numbers it took
    assert status == 202, body
    assert body["state"] == "pending"
    pending_rules = body["rules"]
    # and applied in both NACLs within moments, at the first number of the range
    body = settled(body["id"])
    assert body["state"] == "active"
    assert body["rules"] == pending_rules
    assert body["ip"] == "203.0.113.7/32"
    assert body["reason"] == "ssh brute force"
    assert body["expires_at"].endswith("Z")
    assert sorted((r["nacl_id"], r["direction"], r["rule_number"]) for r in body["rules"]) == [
        (nacl, "ingress", 10) for nacl in sorted(stack.nacl_ids)
    ]
    for nacl_id in stack.nacl_ids:
        assert stack.managed(nacl_id) == [(10, False, "203.0.113.7/32")]
        entry = next(e for e in stack.entries(nacl_id) if e["RuleNumber"] == 10 and not e["Egress"])
        assert (entry["RuleAction"], entry["Protocol"]) == ("deny", "-1")
    assert len(stack.items("SLOT#")) == 2
    assert [i["block_id"] for i in stack.items("ADDR#")] == [body["id"]]

    # When the expiry passes
    execution = stack.execution_arn(body["id"])
    assert stack.finished(execution)["status"] == "SUCCEEDED"

    # Then: gone everywhere, within seconds of the deadline, through one Wait
    item = stack.block(body["id"])
    assert item["state"] == "expired"
    assert 0 <= item["ended_at"] - item["expires_at"] <= 5
    assert stack.path(execution) == HAPPY_PATH
    assert_nothing_left(stack)
    events = sorted(stack.items("HIST#"), key=lambda i: str(i["sk"]))
    assert [(e["event"], e["block_id"]) for e in events] == [
        ("requested", body["id"]),
        ("applied", body["id"]),
        ("expired", body["id"]),
    ]
    assert events[-1]["reason"] == "expired" and events[-1]["expires_at"] == item["expires_at"]


def test_a_repeat_extends_the_block_and_never_takes_a_second_slot(stack: Stack) -> None:
    status, first = block("198.51.100.23", duration=5)
    assert status == 202

    status, again = block("198.51.100.23", duration=9)

    assert status == 200
    assert again["id"] == first["id"]
    assert again["expires_at"] > first["expires_at"]
    assert len(stack.items("SLOT#")) == 2  # one per NACL, as before
    # A shorter repeat never shortens it.
    status, shorter = block("198.51.100.23", duration=1)
    assert (status, shorter["expires_at"]) == (200, again["expires_at"])

    # Still blocked after the first expiry has passed...
    time.sleep(max(0.0, datetime.fromisoformat(first["expires_at"]).timestamp() - time.time()) + 1)
    assert stack.managed(stack.nacl_ids[0]) == [(10, False, "198.51.100.23/32")]
    # ...and released after the second.
    execution = stack.execution_arn(first["id"])
    assert stack.finished(execution)["status"] == "SUCCEEDED"
    assert stack.path(execution).count("WaitUntilExpiry") >= 2
    assert stack.block(first["id"])["state"] == "expired"
    assert_nothing_left(stack)


def test_unblock_removes_the_entries_at_once_and_stops_the_waiting_execution(stack: Stack) -> None:
    status, created = block("203.0.113.50", duration=600)
    assert status == 202
    assert settled(created["id"])["state"] == "active"

    status, body = call("api_delete_block.json", TOKEN, block_id=created["id"])

    assert status == 200
    assert body["state"] == "unblocked"
    assert body["end_reason"].startswith("unblocked by api:")
    assert_nothing_left(stack)  # checked right after the answer, not at the old expiry
    execution = stack.finished(stack.execution_arn(created["id"]), timeout=10)
    assert execution["status"] == "ABORTED"  # moto drops StopExecution's error and cause; AWS keeps them
    # Unblocking again says what happened, changes nothing.
    status, again = call("api_delete_block.json", TOKEN, block_id=created["id"])
    assert (status, again["state"]) == (200, "unblocked")


def test_a_failing_nacl_call_is_compensated_and_leaves_nothing(stack: Stack, fault: Faults) -> None:
    # Given: EC2 accepts the entry in the first NACL and refuses it in the second, for good
    refused = stack.nacl_ids[1]
    fault(
        "ec2.CreateNetworkAclEntry", "UnauthorizedOperation", times=-1, when=lambda p: p.get("NetworkAclId") == refused
    )

    status, body = block("203.0.113.9")

    assert (status, body["state"]) == (202, "pending")
    body = settled(body["id"])
    assert body["state"] == "failed"
    assert "UnauthorizedOperation" in body["end_reason"]
    block_item = next(i for i in stack.items("BLOCK#"))
    assert block_item["state"] == "failed"
    execution = stack.execution_arn(block_item["id"])
    assert stack.finished(execution)["status"] == "FAILED"
    assert stack.path(execution) == [
        "Validate",
        "Reserve",
        "Apply",
        "Compensate",
        "RejectedOrFailed",
        "Failed",
    ]
    assert_nothing_left(stack)  # the entry written in the first NACL was removed again


def test_a_transient_nacl_failure_is_retried_and_the_block_applied(stack: Stack, fault: Faults) -> None:
    fault("ec2.CreateNetworkAclEntry", "RequestLimitExceeded", times=1)

    status, body = block("203.0.113.10", duration=5)

    assert status == 202
    assert settled(body["id"])["state"] == "active"
    execution = stack.execution_arn(body["id"])
    assert stack.finished(execution)["status"] == "SUCCEEDED"
    history = stack.sfn.get_execution_history(executionArn=execution)["events"]
    failed = [e["taskFailedEventDetails"]["error"] for e in history if e["type"] == "TaskFailed"]
    assert failed == ["TransientAwsError"]  # one failure, retried by the ASL
    assert stack.block(body["id"])["state"] == "expired"
    assert_nothing_left(stack)


@pytest.mark.parametrize("when_full", ["reject", "evict-soonest-expiring"])
def test_a_full_nacl(deploy: Callable[..., Stack], when_full: str) -> None:
    stack = deploy(nacls=1, RuleLimit=2, WhenFull=when_full)
    # soon lasts long enough to be still active on a loaded machine when the third block comes
    _, soon = block("203.0.113.1", duration=30)
    _, late = block("203.0.113.2", duration=600)
    assert [settled(b["id"])["state"] for b in (soon, late)] == ["active", "active"]

    status, third = block("203.0.113.3", duration=600)

    nacl = stack.nacl_ids[0]
    if when_full == "reject":
        assert status == 503
        assert third == {
            "error": "capacity_exceeded",
            "message": f"no free rule number: {nacl} ingress holds 2 of 2 blocks (rules 10-11, RuleLimit); WhenFull=reject",
        }
        assert stack.managed(nacl) == [(10, False, "203.0.113.1/32"), (11, False, "203.0.113.2/32")]
        rejected = next(i for i in stack.items("BLOCK#") if i["cidr"] == "203.0.113.3/32")
        assert rejected["state"] == "rejected"
        assert rejected["end_reason"] == f"CapacityExceeded: {third['message']}"
        executions = stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
        assert rejected["id"] not in {e["name"] for e in executions}  # refused before it held anything
        events = sorted(stack.items("HIST#203.0.113.3/32"), key=lambda i: str(i["sk"]))
        assert [e["event"] for e in events] == ["requested", "rejected"]
        assert events[-1]["reason"] == f"CapacityExceeded: {third['message']}"
    else:
        assert status == 202
        assert third["rules"] == []  # the range was full: its workflow evicts to make room
        third = settled(third["id"])
        assert third["rules"] == [
            {
                "nacl_id": nacl,
                "direction": "ingress",
                "rule_number": 10,
                "account": "123456789012",
                "region": "us-east-1",
            }
        ]
        assert third["evicted"] == [{"id": soon["id"], "ip": "203.0.113.1/32"}]  # who made room, by name
        path = stack.path(stack.execution_arn(third["id"]))
        assert path[:4] == ["Validate", "Reserve", "ReserveByEviction", "Apply"]
        assert stack.managed(nacl) == [(10, False, "203.0.113.3/32"), (11, False, "203.0.113.2/32")]
        evicted = stack.block(soon["id"])
        assert evicted["state"] == "evicted"
        assert evicted["end_reason"].startswith(f"evicted early for block {third['id']} (203.0.113.3/32)")
        (event,) = [e for e in stack.items("HIST#203.0.113.1/32") if e["event"] == "evicted"]
        assert (event["reason"], event["source"]) == (evicted["end_reason"], third["source"])
        # The evicted block's own execution wakes at its old expiry, finds it released, ends cleanly.
        assert stack.finished(stack.execution_arn(soon["id"]), timeout=90)["status"] == "SUCCEEDED"
        assert stack.managed(nacl) == [(10, False, "203.0.113.3/32"), (11, False, "203.0.113.2/32")]
    assert stack.block(late["id"])["state"] == "active"
    assert_foreign_untouched(stack)


def test_ipv6_blocks_in_both_directions_are_ipv6_entries(stack: Stack) -> None:
    status, body = call(
        "api_create_block_ipv6.json", TOKEN, body={"ip": "2001:db8::7", "duration": 5, "direction": "both"}
    )

    assert status == 202
    assert settled(body["id"])["state"] == "active"
    for nacl_id in stack.nacl_ids:
        assert stack.managed(nacl_id) == [(10, False, "2001:db8::7/128"), (10, True, "2001:db8::7/128")]
        entries = [e for e in stack.entries(nacl_id) if e["RuleNumber"] == 10]
        assert all("Ipv6CidrBlock" in e and "CidrBlock" not in e for e in entries)
    assert len(body["rules"]) == 4
    assert stack.finished(stack.execution_arn(body["id"]))["status"] == "SUCCEEDED"
    assert_nothing_left(stack)


def test_egress_blocks_deny_outbound_only(stack: Stack) -> None:
    status, body = block("198.51.100.80", duration=5, direction="egress")

    assert status == 202
    assert settled(body["id"])["state"] == "active"
    for nacl_id in stack.nacl_ids:
        assert stack.managed(nacl_id) == [(10, True, "198.51.100.80/32")]
    assert stack.finished(stack.execution_arn(body["id"]))["status"] == "SUCCEEDED"
    assert_nothing_left(stack)


def test_a_repeat_in_another_direction_is_a_conflict_not_a_second_slot(stack: Stack) -> None:
    status, first = block("198.51.100.81", duration=600)
    assert status == 202

    status, body = block("198.51.100.81", duration=600, direction="egress")

    assert status == 409
    assert body["message"] == (
        f"198.51.100.81/32 is already blocked (ingress, block {first['id']}); unblock it before blocking it egress"
    )
    assert len(stack.items("SLOT#")) == 2


def test_a_foreign_entry_at_our_number_is_left_alone_and_the_block_moves(stack: Stack) -> None:
    # Given: someone wrote their own rule at rule 10, inside our range, in the first NACL
    nacl = stack.nacl_ids[0]
    stack.ec2.create_network_acl_entry(
        NetworkAclId=nacl, RuleNumber=10, Protocol="-1", RuleAction="deny", Egress=False, CidrBlock="192.0.2.10/32"
    )

    status, body = block("203.0.113.77", duration=5)

    assert status == 202
    rules = {(r["nacl_id"], r["rule_number"]) for r in settled(body["id"])["rules"]}
    assert rules == {(nacl, 11), (stack.nacl_ids[1], 10)}
    assert stack.managed(nacl) == [(10, False, "192.0.2.10/32"), (11, False, "203.0.113.77/32")]
    assert stack.finished(stack.execution_arn(body["id"]))["status"] == "SUCCEEDED"
    assert stack.managed(nacl) == [(10, False, "192.0.2.10/32")]  # still there, untouched
    quarantined = stack.items("SLOT#")
    assert [(q["sk"], q["block_id"]) for q in quarantined] == [("00010", "foreign")]


def test_an_unblock_while_the_block_is_being_applied_leaves_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: the API unblocks the block right after Apply wrote its first entry
    original = Nacls.deny
    unblocked: list[int] = []

    def deny(self: Nacls, *args: Any) -> None:
        original(self, *args)
        if not unblocked:
            item = next(i for i in stack.items("BLOCK#"))
            other = isolated_api().lambda_handler  # a second API environment, concurrent with the first
            unblocked.append(call("api_delete_block.json", TOKEN, block_id=item["id"], handler=other)[0])

    monkeypatch.setattr(Nacls, "deny", deny)

    _, body = block("203.0.113.88", duration=600)

    # The API may answer the first request as soon as the block is unblocked, a moment before the
    # second request's answer is back in the Apply thread.
    wait_until(lambda: unblocked, 10, "the concurrent unblock to answer")
    assert unblocked == [200]
    execution = stack.execution_arn(body["id"])
    wait_until(lambda: stack.sfn.describe_execution(executionArn=execution)["status"] != "RUNNING", 30, "execution")
    assert stack.block(body["id"])["state"] == "unblocked"
    assert_nothing_left(stack)


def test_a_workflow_that_cannot_start_fails_the_request_and_leaves_nothing(stack: Stack, fault: Faults) -> None:
    fault("sfn.StartExecution", "ServiceUnavailable", times=-1, status=503)

    status, body = block("203.0.113.99")

    assert status == 503
    assert body == {
        "error": "workflow_unavailable",
        "message": "could not start the block's workflow: ServiceUnavailable",
    }
    (item,) = stack.items("BLOCK#")
    assert (item["state"], item["end_reason"]) == ("failed", "the workflow could not be started")
    assert_nothing_left(stack)


def test_a_nacl_at_its_rules_quota_rejects_the_block_and_leaves_nothing(deploy: Callable[..., Stack]) -> None:
    # Given: the customer's own rules fill the NACL to AWS's 20 inbound IPv4 rules
    stack = deploy(nacls=1, RuleLimit=5)
    nacl = stack.nacl_ids[0]
    for number in range(300, 317):  # 17 more beside the 3 foreign inbound rules
        stack.ec2.create_network_acl_entry(
            NetworkAclId=nacl,
            RuleNumber=number,
            Protocol="-1",
            RuleAction="deny",
            Egress=False,
            CidrBlock=f"192.0.2.{number - 290}/32",
        )
    stack.baseline = {nacl: stack.foreign(nacl)}

    status, body = block("203.0.113.120")

    assert (status, body["state"]) == (202, "pending")
    body = settled(body["id"])
    assert body["state"] == "rejected"
    assert body["end_reason"] == f"NaclQuotaExceeded: {nacl} has reached its quota of IPv4 rules per direction"
    assert_nothing_left(stack)
    # IPv6 rules are counted separately: an IPv6 block still fits
    status, v6 = block("2001:db8::120")
    assert status == 202, v6
