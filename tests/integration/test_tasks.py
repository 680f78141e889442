"""The state machine's tasks called directly with the events/ fixtures (what sam local invoke sends)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from autoblock.handlers import tasks, wiring
from autoblock.models import BlockRequest, Ticket
from autoblock_local.emulator import FakeLambdaContext
from autoblock_local.invoke import event
from tests.integration.conftest import Faults, Stack


def registered(ip: str = "203.0.113.21", duration: int = 600, **request: Any) -> dict[str, Any]:
    """A block registered as the API registers it (rule numbers included), its workflow not started:
    its ticket, as StartExecution would hand it to the first task."""
    done = wiring.lifecycle().registration.register(BlockRequest(ip=ip, duration=duration, **request), "test")
    return Ticket.of(done.block, reserved=done.reserved).model_dump()


FIXTURES = {
    "reserve": "task_reserve.json",
    "apply": "task_apply.json",
    "expire": "task_expire.json",
    "compensate": "task_compensate.json",
}


def run(task: str, ticket: dict[str, Any]) -> dict[str, Any]:
    """The task's fixture (as sam local invoke -e sends it), for the given block's ticket."""
    return tasks.lambda_handler({**event(FIXTURES[task]), "ticket": ticket}, FakeLambdaContext())


def test_apply_then_expire_one_step_at_a_time(stack: Stack) -> None:
    ticket = registered()
    assert ticket["state"] == "pending" and ticket["reserved"] is True
    assert {k.split("|")[1] for k in ticket["rules"]} == {"ingress"} and set(ticket["rules"].values()) == {10}
    assert len(stack.items("SLOT#")) == 2 and all(stack.managed(n) == [] for n in stack.nacl_ids)

    applied = run("apply", ticket)

    assert applied["state"] == "active" and applied["expires_at"] == ticket["expires_at"]
    assert all(stack.managed(n) == [(10, False, "203.0.113.21/32")] for n in stack.nacl_ids)
    assert stack.block(ticket["block_id"])["state"] == "active"
    # Run again (a retried task): nothing changes, nothing is duplicated
    assert run("apply", ticket)["state"] == "active"
    assert run("reserve", applied)["state"] == "active"
    assert len(stack.items("SLOT#")) == 2
    assert all(stack.managed(n) == [(10, False, "203.0.113.21/32")] for n in stack.nacl_ids)
    # Not due yet: Expire hands it back to the Wait
    assert run("expire", applied) == {**applied, "reserved": False}


def test_the_tasks_emit_their_metrics(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    ticket = registered("203.0.113.22", duration=1)
    capsys.readouterr()
    run("apply", ticket)
    run("compensate", ticket)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    emitted = [
        (m["Name"], line.get("Reason"))
        for line in lines
        if "_aws" in line
        for d in line["_aws"]["CloudWatchMetrics"]
        for m in d["Metrics"]
    ]
    assert ("BlocksApplied", None) in emitted
    assert ("BlocksFailed", "TransientAwsError") in emitted


def test_compensate_with_the_fixture_removes_everything(stack: Stack) -> None:
    ticket = registered()
    run("apply", ticket)

    answer = run("compensate", ticket)

    assert answer["state"] == "failed"
    assert (
        stack.block(ticket["block_id"])["end_reason"]
        == "TransientAwsError: CreateNetworkAclEntry: RequestLimitExceeded"
    )
    assert all(stack.managed(n) == [] for n in stack.nacl_ids)
    assert stack.items("SLOT#") == [] and stack.items("ADDR#") == []
    # Compensating twice is harmless
    assert run("compensate", ticket)["state"] == "failed"


def test_compensate_for_a_block_that_never_existed_ends_quietly(stack: Stack) -> None:
    answer = tasks.lambda_handler(event("task_compensate.json"), FakeLambdaContext())
    assert (answer["block_id"], answer["state"]) == ("0123456789abcdef0123456789abcdef", "failed")
    assert stack.items() == []


def test_compensate_never_takes_over_a_block_another_actor_is_releasing(stack: Stack) -> None:
    # Given: an applied block whose unblock has begun (releasing, to end "unblocked") and not finished
    ticket = registered("203.0.113.23")
    run("apply", ticket)
    wiring.lifecycle().store.transition(
        ticket["block_id"], frozenset({"active"}), "releasing", 0, ending=("unblocked", "unblocked by test", None)
    )

    # When: a failed execution's Compensate reaches it
    answer = run("compensate", ticket)

    # Then: the release stays the unblock's: its ending is untouched, nothing is finished as failed
    assert answer["state"] == "releasing"
    item = stack.block(ticket["block_id"])
    assert (item["state"], item["ending_state"], item["ending_reason"]) == (
        "releasing",
        "unblocked",
        "unblocked by test",
    )
    # and whoever resumes that release ends it as it was meant to end
    assert wiring.lifecycle().resume_release(wiring.lifecycle().get(ticket["block_id"])).state == "unblocked"
    assert all(stack.managed(n) == [] for n in stack.nacl_ids)


def test_a_transaction_cancelled_by_a_concurrent_one_is_retried(stack: Stack, fault: Faults) -> None:
    # Given: DynamoDB cancels the next transaction because another one wrote the same item meanwhile
    fault(
        "dynamodb.TransactWriteItems",
        "TransactionCanceledException",
        CancellationReasons=[{"Code": "TransactionConflict"}, {"Code": "None"}],
    )

    # When: a block is registered
    ticket = registered("203.0.113.24")

    # Then: the cancelled transaction was tried again and the block holds its lock and numbers
    assert ticket["state"] == "pending" and ticket["reserved"] is True
    assert [i["block_id"] for i in stack.items("ADDR#")] == [ticket["block_id"]]
    assert len(stack.items("SLOT#")) == 2
    assert [e["event"] for e in stack.items("HIST#")] == ["requested"]


def test_a_task_s_transaction_cancelled_by_a_concurrent_one_is_retried_by_the_workflow(
    stack: Stack, fault: Faults
) -> None:
    # Given: a registered block whose activation meets a TransactionConflict once
    ticket = registered("203.0.113.25", duration=3)
    fault(
        "dynamodb.TransactWriteItems",
        "TransactionCanceledException",
        CancellationReasons=[{"Code": "TransactionConflict"}, {"Code": "None"}, {"Code": "None"}],
    )

    # When: its execution runs
    execution = stack.start(ticket["block_id"])

    # Then: Apply failed once as transient, was retried, and the block went through its whole life
    assert stack.finished(execution, timeout=40)["status"] == "SUCCEEDED"
    history = stack.sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
    assert [e["taskFailedEventDetails"]["error"] for e in history if e["type"] == "TaskFailed"] == ["TransientAwsError"]
    assert stack.block(ticket["block_id"])["state"] == "expired"
