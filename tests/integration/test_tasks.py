"""The state machine's tasks called directly with the events/ fixtures (what sam local invoke sends)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from autoblock.handlers import tasks, wiring
from autoblock.models import BlockRequest, Ticket
from autoblock_local.emulator import FakeLambdaContext
from tests.integration.api import event
from tests.integration.conftest import Stack


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


def test_a_transaction_cancelled_by_a_concurrent_one_is_retried(stack: Stack) -> None:
    # Given: DynamoDB cancels the next transaction because another one touched the same item
    session = wiring.lifecycle  # noqa: F841 - the clients are made again with the hook below
    import boto3

    cancelled = [0]

    def conflict(**kwargs: Any) -> None:
        if cancelled[0] == 0:
            cancelled[0] += 1
            error: Any = {
                "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}],
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
            raise ClientError(error, "TransactWriteItems")

    botocore_session = boto3._get_default_session()._session
    botocore_session.register("before-call.dynamodb.TransactWriteItems", conflict)
    wiring.reset()
    try:
        # When: a block is registered
        ticket = registered("203.0.113.24")
    finally:
        botocore_session.unregister("before-call.dynamodb.TransactWriteItems", conflict)
        wiring.reset()

    # Then: the cancelled transaction was tried again and the block holds its numbers
    assert cancelled == [1]
    assert ticket["state"] == "pending" and ticket["reserved"] is True
    assert [i["block_id"] for i in stack.items("ADDR#")] == [ticket["block_id"]]
    assert len(stack.items("SLOT#")) == 2
