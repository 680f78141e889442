"""The state machine's Lambda tasks called directly with the events/ fixtures (what sam local invoke sends)."""

from __future__ import annotations

import json

import pytest

from autoblock.errors import BlockNotFound, PolicyViolation
from autoblock.handlers import tasks, wiring
from autoblock.models import BlockRequest
from autoblock_local.emulator import FakeLambdaContext
from autoblock_local.invoke import event
from tests.integration.conftest import Stack


def registered(ip: str = "203.0.113.21", duration: int = 600) -> str:
    return wiring.lifecycle().register(BlockRequest(ip=ip, duration=duration), source="test").block.id


def run(task: str, block_id: str, fixture: str = "task_block.json") -> dict:
    payload = {**event(fixture), "block_id": block_id}
    return getattr(tasks, task)(payload, FakeLambdaContext())


def test_the_fixture_names_an_unknown_block_so_validate_says_so(stack: Stack) -> None:
    with pytest.raises(BlockNotFound, match="no block with id 0123456789abcdef0123456789abcdef"):
        tasks.validate(event("task_block.json"), FakeLambdaContext())


def test_validate_reserve_apply_expire_one_step_at_a_time(stack: Stack) -> None:
    block_id = registered()

    assert run("validate", block_id)["state"] == "pending"
    assert run("reserve", block_id)["state"] == "pending"
    assert len(stack.items("SLOT#")) == 2 and all(stack.managed(n) == [] for n in stack.nacl_ids)
    applied = run("apply", block_id)
    assert applied["state"] == "active" and applied["expires_at"].endswith("Z")
    assert all(stack.managed(n) == [(10, False, "203.0.113.21/32")] for n in stack.nacl_ids)
    # Run again (a retried task): nothing changes, nothing is duplicated
    assert run("apply", block_id)["state"] == "active"
    assert run("reserve", block_id)["state"] == "active"
    assert len(stack.items("SLOT#")) == 2
    # Not due yet: Expire hands it back to the Wait
    assert run("expire", block_id) == applied


def test_the_tasks_emit_their_metrics(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    block_id = registered("203.0.113.22", duration=1)
    capsys.readouterr()
    for task in ("validate", "reserve", "apply"):
        run(task, block_id)
    run("compensate", block_id, fixture="task_compensate.json")

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
    block_id = registered()
    run("reserve", block_id)
    run("apply", block_id)

    answer = run("compensate", block_id, fixture="task_compensate.json")

    assert answer["state"] == "failed"
    assert stack.block(block_id)["end_reason"] == "TransientAwsError: CreateNetworkAclEntry: RequestLimitExceeded"
    assert all(stack.managed(n) == [] for n in stack.nacl_ids)
    assert stack.items("SLOT#") == [] and stack.items("ADDR#") == []
    # Compensating twice is harmless
    assert run("compensate", block_id, fixture="task_compensate.json")["state"] == "failed"


def test_compensate_for_a_block_that_never_existed_ends_quietly(stack: Stack) -> None:
    answer = tasks.compensate(event("task_compensate.json"), FakeLambdaContext())
    assert answer == {"block_id": "0123456789abcdef0123456789abcdef", "state": "failed", "expires_at": ""}


def test_validate_refuses_an_address_allowlisted_after_it_was_requested(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    block_id = registered("198.51.100.44")
    monkeypatch.setenv("ALLOWLIST_CIDRS", "198.51.100.0/24")
    wiring.reset()

    with pytest.raises(PolicyViolation, match=r"allowlisted 198\.51\.100\.0/24"):
        run("validate", block_id)
