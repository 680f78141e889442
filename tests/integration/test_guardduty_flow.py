"""GuardDuty findings, end to end on moto: the template's rule pattern, then the real workflow.

moto does not deliver rule targets to Step Functions, and its TestEventPattern answers nothing,
but it does match patterns for SQS targets: the template's own rule goes on moto's bus with a
capture queue, each fixture is put, and what reaches the queue is what the rule would hand the
state machine (it has no InputPath or transformer: the whole event). That is what each execution
is started with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from autoblock.handlers import wiring
from autoblock_local.emulator import acting_as
from autoblock_local.invoke import event
from tests.integration.conftest import REGION, ROOT, Stack, load_template, resolve, wait_until

if TYPE_CHECKING:
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

FINDINGS = sorted(p.name for p in (ROOT / "events").glob("guardduty_*.json"))
RULE = load_template()["Resources"]["BlockStateMachine"]["Properties"]["Events"]["GuardDutyFinding"]["Properties"]
RULE_ID = "BlockStateMachineGuardDutyFinding"  # the rule's logical id once SAM has transformed the template

SEQUENCE_REASON = (
    "attack sequence AttackSequence:EC2/CompromisedInstanceGroup names 6 network endpoints, 4 public addresses "
    "among them: not blocked automatically, a sequence bundles many signals; review it, then "
    "`autoblock block --from-finding FILE`"
)

# What each finding leaves in every NACL: (rule number, egress, CIDR), or why there is nothing.
EXPECTED: dict[str, list[tuple[int, bool, str]] | str] = {
    "guardduty_ssh_bruteforce.json": [(10, False, "203.0.113.7/32")],
    "guardduty_c2_activity.json": [(10, True, "198.51.100.77/32")],
    "guardduty_bitcoin_tool.json": [(10, True, "192.0.2.88/32")],
    "guardduty_ipv6_inbound.json": [(10, False, "2001:db8:bad:1::7/128")],
    "guardduty_port_probe_unprotected_port.json": [(10, False, "198.51.100.200/32")],
    "guardduty_rds_login_attempt.json": [(10, False, "203.0.113.99/32")],
    "guardduty_own_address_remote.json": [(10, False, "192.0.2.200/32")],
    "guardduty_port_probe_emr.json": [
        (10, False, "192.0.2.33/32"),
        (10, False, "203.0.113.21/32"),
        (10, False, "2001:db8:feed::33/128"),
    ],
    "guardduty_lambda_c2_activity.json": [(10, True, "203.0.113.66/32")],
    "guardduty_lambda_tor_client.json": [(10, True, "192.0.2.45/32")],
    "guardduty_runtime_c2_activity.json": [(10, True, "198.51.100.123/32")],
    "guardduty_runtime_c2_activity_dns.json": "skipped",
    "guardduty_attack_sequence.json": "attack sequence",
    "guardduty_aws_api_call.json": "skipped",
    "guardduty_kubernetes_api_call.json": "skipped",
    "guardduty_dns_request.json": "skipped",
    "guardduty_ssh_bruteforce_outbound.json": "skipped",
    "guardduty_archived.json": "ignored",
    "guardduty_malformed_no_action.json": "not delivered",
    "guardduty_port_probe_20_sources.json": "RuleLimit",  # its own test below
    "guardduty_ssh_bruteforce_update.json": "extension",  # its own test below
}


@pytest.fixture
def bus(aws: None) -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    """put(event) → the events the template's rule delivers (through an SQS capture target)."""
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="capture")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="guardduty-findings", EventPattern=json.dumps(RULE["Pattern"]), State="ENABLED")
    events.put_targets(Rule="guardduty-findings", Targets=[{"Id": "capture", "Arn": queue_arn}])

    def put(raw: dict[str, Any]) -> list[dict[str, Any]]:
        entry: PutEventsRequestEntryTypeDef = {
            "Source": raw["source"],
            "DetailType": raw["detail-type"],
            "Detail": json.dumps(raw["detail"]),
        }
        assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in messages]

    return put


def deliver(stack: Stack, bus: Callable[[dict[str, Any]], list[dict[str, Any]]], name: str) -> str | None:
    """Send the fixture through the rule; start the workflow with what the rule passes. Its execution arn."""
    delivered = bus(event(name))
    if not delivered:
        return None
    (what_the_rule_passes,) = delivered
    with acting_as(RULE_ID):  # the rule's role starts the execution
        answer = stack.sfn.start_execution(
            stateMachineArn=stack.state_machine_arn,
            name=f"finding-{what_the_rule_passes['id']}",
            input=json.dumps(what_the_rule_passes),
        )
    return str(answer["executionArn"])


def settle(stack: Stack) -> None:
    """Wait until every block the findings started is applied or refused."""
    wait_until(
        lambda: all(b["state"] in ("active", "rejected", "failed") for b in stack.items("BLOCK#")), 30, "blocks pending"
    )


def test_the_rule_matches_findings_and_nothing_else(
    stack: Stack, bus: Callable[[dict[str, Any]], list[dict[str, Any]]]
) -> None:
    delivered = {name: len(bus(event(name))) for name in FINDINGS}

    assert delivered == {name: 0 if EXPECTED[name] == "not delivered" else 1 for name in FINDINGS}
    assert bus(event("schedule_sweep.json")) == []
    other = {**event("guardduty_ssh_bruteforce.json"), "detail-type": "GuardDuty Malware Protection Object Scan Result"}
    assert bus(other) == []
    forged = {**event("guardduty_ssh_bruteforce.json"), "source": "my.app"}
    assert bus(forged) == []
    # Without an action, only a type that starts with AttackSequence: gets in
    no_action = event("guardduty_malformed_no_action.json")
    lookalike = {**no_action, "detail": {**no_action["detail"], "type": "Recon:EC2/AttackSequence:Lookalike"}}
    assert bus(lookalike) == []
    sequence = {**no_action, "detail": {**no_action["detail"], "type": "AttackSequence:S3/CompromisedData"}}
    assert len(bus(sequence)) == 1
    forged_sequence = {**event("guardduty_attack_sequence.json"), "source": "my.app"}
    assert bus(forged_sequence) == []


@pytest.mark.parametrize(
    "name", [n for n in FINDINGS if EXPECTED[n] not in ("not delivered", "RuleLimit", "extension")]
)
def test_each_finding_blocks_exactly_its_attackers(
    stack: Stack, bus: Callable[[dict[str, Any]], list[dict[str, Any]]], name: str
) -> None:
    execution = deliver(stack, bus, name)
    assert execution is not None

    result = stack.finished(execution)

    assert result["status"] == "SUCCEEDED"
    assert stack.path(execution) == ["Validate", "FromFinding", "FindingHandled"]
    output = json.loads(result["output"])
    expected = EXPECTED[name]
    if isinstance(expected, str):
        assert output["created"] == [] and output["extended"] == []
        assert (output["outcome"] == "ignored") == (expected in ("ignored", "attack sequence"))
        reasons = {"ignored": "archived finding", "attack sequence": SEQUENCE_REASON}
        assert output["reason"] == reasons.get(expected, "")
        assert (output["skipped"] != []) == (expected == "skipped")
        assert stack.items() == []
    else:
        settle(stack)
        for nacl_id in stack.nacl_ids:
            managed = stack.managed(nacl_id)
            assert sorted((egress, cidr) for _, egress, cidr in managed) == sorted((e, c) for _, e, c in expected)
            numbers = [n for n, _, _ in managed]
            assert len(set(numbers)) == len(numbers) and set(numbers) <= set(range(10, 15))
        blocks = stack.items("BLOCK#")
        finding_id = event(name)["detail"]["id"]
        assert {b["source"] for b in blocks} == {f"guardduty:{finding_id}"}
        assert all(b["reason"].startswith(f"GuardDuty {event(name)['detail']['type']}") for b in blocks)


def test_a_lambda_finding_leaves_an_egress_deny_of_its_command_and_control_server_in_every_nacl(
    stack: Stack, bus: Callable[[dict[str, Any]], list[dict[str, Any]]]
) -> None:
    # Given: a Lambda function in the VPC talking to a C&C server
    execution = deliver(stack, bus, "guardduty_lambda_c2_activity.json")
    assert execution is not None

    # When
    output = json.loads(stack.finished(execution)["output"])
    settle(stack)

    # Then: one egress deny per NACL, none inbound, from a block that names the finding
    ((block,),) = [output["created"]]
    assert (block["address"], block["direction"]) == ("203.0.113.66/32", "egress")
    for nacl_id in stack.nacl_ids:
        denies = [
            e for e in stack.entries(nacl_id) if e["RuleAction"] == "deny" and e.get("CidrBlock") == "203.0.113.66/32"
        ]
        assert [(d["Egress"], d["RuleNumber"]) for d in denies] == [(True, 10)]
    (item,) = stack.items("BLOCK#")
    assert (item["state"], item["source"]) == ("active", "guardduty:f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0e2")
    assert item["reason"] == (
        "GuardDuty Backdoor:Lambda/C&CActivity.B: outbound connection to a malicious host (severity 8.0)"
    )


def test_an_attack_sequence_reaches_the_workflow_and_is_recorded_as_not_blocked(
    stack: Stack, bus: Callable[[dict[str, Any]], list[dict[str, Any]]]
) -> None:
    execution = deliver(stack, bus, "guardduty_attack_sequence.json")  # no action: only the $or lets it in
    assert execution is not None

    output = json.loads(stack.finished(execution)["output"])

    assert (output["outcome"], output["reason"]) == ("ignored", SEQUENCE_REASON)
    assert stack.path(execution) == ["Validate", "FromFinding", "FindingHandled"]
    assert stack.items() == []
    assert all(stack.managed(nacl_id) == [] for nacl_id in stack.nacl_ids)


def test_a_malformed_finding_ends_cleanly_and_writes_nothing(stack: Stack) -> None:
    # The rule does not deliver it (no action); started by hand it still ends cleanly, once.
    raw = event("guardduty_malformed_no_action.json")
    arn = stack.sfn.start_execution(stateMachineArn=stack.state_machine_arn, name="malformed", input=json.dumps(raw))[
        "executionArn"
    ]

    assert stack.finished(arn)["status"] == "SUCCEEDED"
    assert stack.path(arn) == ["Validate", "FromFinding", "MalformedFinding"]
    history = stack.sfn.get_execution_history(executionArn=arn)["events"]
    failures = [e["taskFailedEventDetails"] for e in history if e["type"] == "TaskFailed"]
    assert [f["error"] for f in failures] == ["MalformedFinding"]  # no retry
    assert "detail.service.action is missing" in failures[0]["cause"]
    assert stack.items() == []


def test_a_finding_sent_again_extends_the_block_without_a_second_slot(
    stack: Stack, bus: Callable[[dict[str, Any]], list[dict[str, Any]]]
) -> None:
    first = deliver(stack, bus, "guardduty_ssh_bruteforce.json")
    assert first is not None and stack.finished(first)["status"] == "SUCCEEDED"
    settle(stack)
    (block,) = stack.items("BLOCK#")

    again = deliver(stack, bus, "guardduty_ssh_bruteforce_update.json")
    assert again is not None
    output = json.loads(stack.finished(again)["output"])

    assert output["created"] == []
    assert output["extended"] == [{"address": "203.0.113.7/32", "direction": "ingress", "block_id": block["id"]}]
    assert len(stack.items("BLOCK#")) == 1
    assert len(stack.items("SLOT#")) == len(stack.nacl_ids)
    assert stack.block(str(block["id"]))["expires_at"] >= block["expires_at"]
    # Another finding naming the same address shares the block too
    probe = {**event("guardduty_port_probe_unprotected_port.json")}
    probe["detail"] = json.loads(json.dumps(probe["detail"]).replace("198.51.100.200", "203.0.113.7"))
    probe["id"] = "another-event"
    arn = stack.sfn.start_execution(stateMachineArn=stack.state_machine_arn, name="probe", input=json.dumps(probe))[
        "executionArn"
    ]
    assert json.loads(stack.finished(arn)["output"])["extended"][0]["block_id"] == block["id"]
    assert len(stack.items("SLOT#")) == len(stack.nacl_ids)


def test_twenty_probers_against_rule_limit_five(
    deploy: Callable[..., Stack], bus: Callable[[dict[str, Any]], list[dict[str, Any]]]
) -> None:
    stack = deploy(nacls=1, RuleLimit=5, WhenFull="reject")

    execution = deliver(stack, bus, "guardduty_port_probe_20_sources.json")
    assert execution is not None
    output = json.loads(stack.finished(execution)["output"])
    settle(stack)

    # five addresses got their block and execution; fifteen were refused for capacity at once
    assert (len(output["created"]), len(output["refused"])) == (5, 15)
    full = f"no free rule number: {stack.nacl_ids[0]} ingress holds 5 of 5 blocks (rules 10-14, RuleLimit)"
    assert {r["reason"] for r in output["refused"]} == {f"{full}; WhenFull=reject"}
    blocks = stack.items("BLOCK#")
    active = [b for b in blocks if b["state"] == "active"]
    rejected = [b for b in blocks if b["state"] == "rejected"]
    assert (len(active), len(rejected)) == (5, 15)
    assert sorted(n for n, _, _ in stack.managed(stack.nacl_ids[0])) == [10, 11, 12, 13, 14]
    for block in rejected:  # the record of what was not blocked, and why
        assert block["end_reason"] == (
            f"CapacityExceeded: no free rule number: {stack.nacl_ids[0]} ingress holds 5 of 5 blocks "
            "(rules 10-14, RuleLimit); WhenFull=reject"
        )
    assert stack.items("ADDR#") and len(stack.items("ADDR#")) == 5


def test_findings_below_the_minimum_severity_are_ignored(
    stack: Stack, bus: Callable[[dict[str, Any]], list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDDUTY_MIN_SEVERITY", "4")
    wiring.reset()

    execution = deliver(stack, bus, "guardduty_ssh_bruteforce.json")  # severity 2: Low
    assert execution is not None
    output = json.loads(stack.finished(execution)["output"])

    assert (output["outcome"], output["reason"]) == ("ignored", "severity 2.0 is below GuardDutyMinSeverity (4.0)")
    assert stack.items() == []


def test_durations_follow_the_severity_bands_within_the_maximum(
    stack: Stack, bus: Callable[[dict[str, Any]], list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_DURATION_SECONDS", "7200")  # below the High default of a day
    wiring.reset()
    low = deliver(stack, bus, "guardduty_ssh_bruteforce.json")  # 2.0
    high = deliver(stack, bus, "guardduty_c2_activity.json")  # 8.0
    assert low is not None and high is not None

    assert json.loads(stack.finished(low)["output"])["duration"] == 3600
    assert json.loads(stack.finished(high)["output"])["duration"] == 7200


def test_the_rule_follows_the_guardduty_enabled_parameter() -> None:
    state = RULE["State"]
    assert resolve(state, {"Condition:GuardDutyOn": True}) == "ENABLED"
    assert resolve(state, {"Condition:GuardDutyOn": False}) == "DISABLED"
    assert Path(ROOT / "template.yaml").read_text().count("GuardDutyEnabled") >= 2
