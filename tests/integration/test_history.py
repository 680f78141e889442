"""History, dry run, escalation and status through the API handler with the events/ fixtures."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from autoblock.handlers import tasks
from autoblock_local.emulator import FakeLambdaContext
from autoblock_local.invoke import call, event, settled
from tests.integration.conftest import TOKEN, Stack
from tests.support.table import assert_nothing_written

SOURCE = "elastalert:ssh-brute-force"
RETENTION = 90 * 86400


def block(ip: str, duration: int = 5, **extra: Any) -> tuple[int, Any]:
    return call("api_create_block.json", TOKEN, body={"ip": ip, "duration": duration, **extra})


def unblock(block_id: str) -> None:
    status, body = call("api_delete_block.json", TOKEN, block_id=block_id)
    assert (status, body["state"]) == (200, "unblocked")


def history(ip: str) -> list[dict[str, Any]]:
    status, body = call("api_history_by_ip.json", TOKEN, query={"ip": ip})
    assert status == 200, body
    return list(body["events"])


def emitted(out: str) -> list[str]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [
        m["Name"] for line in lines if "_aws" in line for d in line["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]
    ]


def test_a_block_s_life_is_recorded_and_served_by_both_history_routes(stack: Stack) -> None:
    # Given a block asked for by a detector, then unblocked through the API
    status, created = block("203.0.113.7", reason="ssh brute force", source=SOURCE)
    assert (status, created["state"], created["source"], created["dry_run"]) == (202, "pending", SOURCE, False)
    assert settled(created["id"])["state"] == "active"
    unblock(created["id"])

    # When
    status, mine = call("api_block_history.json", TOKEN, block_id=created["id"])
    by_ip = history("203.0.113.7")  # the fixture as committed asks for this address

    # Then
    assert status == 200
    assert (mine["block_id"], mine["ip"]) == (created["id"], "203.0.113.7/32")
    assert [e["event"] for e in mine["events"]] == ["requested", "applied", "unblocked"]
    requested, applied, unblocked = mine["events"]
    assert (requested["source"], requested["reason"], requested["duration"]) == (SOURCE, "ssh brute force", 5)
    assert requested["expires_at"] == created["expires_at"]
    assert (applied["source"], applied["duration"]) == (SOURCE, None)  # null where it does not apply
    assert set(applied) == {"at", "block_id", "ip", "event", "source", "reason", "duration", "expires_at"}
    assert applied["reason"] == "denied in " + ", ".join(f"{n} ingress rule 10" for n in sorted(stack.nacl_ids))
    assert unblocked["source"].startswith("api:") and unblocked["reason"] == f"unblocked by {unblocked['source']}"
    assert all(e["at"].endswith("Z") and e["block_id"] == created["id"] for e in mine["events"])
    assert by_ip == mine["events"]
    # Stored as their own items, kept HistoryRetentionDays, never in the live index
    items = stack.items("HIST#")
    assert len(items) == 3
    assert all(i["pk"] == "HIST#203.0.113.7/32" and i["ttl"] == i["at"] + RETENTION for i in items)
    assert not any("gsi1pk" in i for i in items)
    assert stack.block(created["id"])["ttl"] > 0


def test_history_of_an_unknown_block_is_404_and_a_bad_address_422(stack: Stack) -> None:
    status, body = call("api_block_history.json", TOKEN)  # the fixture's id exists nowhere
    assert (status, body["error"]) == (404, "not_found")

    status, body = call("api_history_by_ip.json", TOKEN, query={"ip": "203.0.113.256"})
    assert (status, body["error"]) == (422, "invalid_address")
    assert "not a valid IPv4 or IPv6 address" in body["message"]
    status, body = call("api_history_by_ip.json", TOKEN, query={"ip": "1" * 100})
    assert (status, body["error"]) == (422, "invalid_address")
    status, body = call("api_history_by_ip.json", TOKEN, query={})
    assert (status, body["error"], body["fields"]) == (
        422,
        "invalid_request",
        [{"field": "ip", "type": "missing", "message": "Field required"}],
    )
    assert history("2001:DB8::7") == []  # normalised; no events yet
    assert_nothing_written(stack)


def test_a_request_the_lifecycle_refuses_is_recorded_as_rejected(stack: Stack) -> None:
    assert block("198.51.100.30", duration=600)[0] == 202

    status, body = block("198.51.100.30", direction="egress", source=SOURCE)

    assert (status, body["error"]) == (409, "conflict")
    rejected = history("198.51.100.30")[-1]
    assert (rejected["event"], rejected["block_id"], rejected["source"]) == ("rejected", "", SOURCE)
    assert rejected["reason"] == body["message"]


def test_a_dry_run_writes_no_nacl_holds_nothing_and_says_what_it_would_do(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    status, dry = block("203.0.113.9", duration=60, dry_run=True)

    assert status == 202, dry
    assert (dry["state"], dry["dry_run"], dry["rules"]) == ("dry-run", True, [])
    assert all(stack.managed(n) == [] for n in stack.nacl_ids)
    assert stack.items("SLOT#") == [] and stack.items("ADDR#") == []
    assert stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"] == []
    assert "BlocksDryRun" in emitted(capsys.readouterr().out)
    status, mine = call("api_block_history.json", TOKEN, block_id=dry["id"])
    assert [e["event"] for e in mine["events"]] == ["requested", "dry-run"]
    places = ", ".join(f"{n} ingress rule 10" for n in stack.nacl_ids)
    assert mine["events"][1]["reason"] == (
        f"would deny 203.0.113.9/32 for 60 s in {places} (dry_run in the request); nothing was written to any NACL"
    )
    assert call("api_list_blocks.json", TOKEN)[1]["blocks"] == []
    assert call("api_get_block.json", TOKEN, block_id=dry["id"])[1]["state"] == "dry-run"

    # A real block of the same address afterwards is not hindered, nor escalated by the dry run
    status, real = block("203.0.113.9", duration=60)
    assert (status, real["state"], real["dry_run"]) == (202, "pending", False)
    assert settled(real["id"])["state"] == "active"
    assert [e["event"] for e in history("203.0.113.9")] == ["requested", "dry-run", "requested", "applied"]


def test_dry_run_stack_parameter_covers_the_guardduty_path(deploy: Callable[..., Stack]) -> None:
    stack = deploy(DryRun="true")

    outcome = tasks.lambda_handler(event("guardduty_ssh_bruteforce.json"), FakeLambdaContext())

    assert outcome["created"] == [] and len(outcome["dry_run"]) == 1
    (item,) = stack.items("BLOCK#")
    assert (item["id"], item["state"], item["dry_run"]) == (outcome["dry_run"][0]["block_id"], "dry-run", True)
    assert item["source"] == f"guardduty:{event('guardduty_ssh_bruteforce.json')['detail']['id']}"
    assert "(DryRun=true)" in item["end_reason"]
    # The finding type is said once, with the severity
    assert (
        item["reason"]
        == "GuardDuty UnauthorizedAccess:EC2/SSHBruteForce: inbound connection from the attacker (severity 2.0)"
    )
    assert all(stack.managed(n) == [] for n in stack.nacl_ids)
    assert stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"] == []


def test_a_repeat_offender_s_blocks_escalate_up_to_the_maximum(
    deploy: Callable[..., Stack], capsys: pytest.CaptureFixture[str]
) -> None:
    stack = deploy(MaxDurationSeconds=25, EscalationFactor=2, EscalationWindowDays=30)
    lengths = []
    capsys.readouterr()
    for _ in range(3):
        status, created = block("203.0.113.60", duration=10)
        assert (status, created["state"]) == (202, "pending"), created
        assert settled(created["id"])["state"] == "active"
        item = stack.block(created["id"])
        lengths.append(item["expires_at"] - item["created_at"])
        unblock(created["id"])

    # expires_at is created_at + duration, rounded up to the second
    assert all(0 <= length - expected <= 1 for length, expected in zip(lengths, [10, 20, 25], strict=True)), lengths
    escalated = [e for e in history("203.0.113.60") if e["event"] == "escalated"]
    assert [(e["reason"], e["duration"]) for e in escalated] == [
        ("2nd block in 30 days: 10 s x 2^1 = 20 s (cap 25 s)", 20),
        ("3rd block in 30 days: 10 s x 2^2 > 25 s: capped at MaxDurationSeconds, 25 s", 25),
    ]
    assert emitted(capsys.readouterr().out).count("BlocksEscalated") == 2


def test_status_counts_rule_numbers_per_nacl_and_direction(deploy: Callable[..., Stack]) -> None:
    stack = deploy(nacls=2, RuleLimit=5)
    assert block("203.0.113.70", duration=600, direction="both")[0] == 202
    assert block("203.0.113.71", duration=600)[0] == 202
    first = sorted(stack.nacl_ids)[0]
    # A quarantined number, as the workflow and the sweeper store it
    stack.ddb.Table(stack.table_name).put_item(
        Item={"pk": f"SLOT#{first}|egress", "sk": "00014", "block_id": "foreign", "cidr": "", "taken_at": 0}
    )

    status, body = call("api_status.json", TOKEN)

    assert status == 200
    assert {k: v for k, v in body.items() if k != "slots"} == {
        "rule_number_start": 10,
        "rule_limit": 5,
        "when_full": "reject",
        "dry_run": False,
        "active_blocks": 2,
        "waf_scope": "NONE",
        "waf_sets": [],
    }
    assert body["slots"] == [
        {
            "nacl_id": nacl,
            "direction": direction,
            "account": "123456789012",
            "region": "us-east-1",
            "used": used,
            "foreign": foreign,
            "free": 5 - used - foreign,
            "limit": 5,
        }
        for nacl in sorted(stack.nacl_ids)
        for direction, used, foreign in (("egress", 1, int(nacl == first)), ("ingress", 2, 0))
    ]
