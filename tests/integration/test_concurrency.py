"""No double booking: 50 requests at once against RuleLimit 5, invariants checked all along."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from autoblock_local.invariants import violations
from autoblock_local.invoke import call, isolated_api
from tests.integration.conftest import TOKEN, Stack, wait_until

ADDRESSES = [f"203.0.113.{i}" for i in range(1, 11)]  # 10 distinct addresses, 5 requests each


def observe(stack: Stack, stop: threading.Event, seen: list[str], count: list[int]) -> None:
    while not stop.is_set():
        seen.extend(violations(stack))
        count[0] += 1


@contextmanager
def observing(stack: Stack) -> Iterator[tuple[list[str], list[int]]]:
    """An observer checking the invariants over and over until the block ends (stopped and joined
    even when the block fails: it must not scan a stack that is gone)."""
    stop, seen, observations = threading.Event(), list[str](), [0]
    observer = threading.Thread(target=observe, args=(stack, stop, seen, observations), name="observer")
    observer.start()
    try:
        yield seen, observations
    finally:
        stop.set()
        observer.join()


def test_fifty_requests_at_once_never_double_book(deploy: Callable[..., Stack]) -> None:
    # Blocks of 10 minutes: none may expire while the test looks (on a loaded machine the requests
    # alone can take longer than a short block lasts); they end by unblocking, all at once.
    stack = deploy(nacls=2, RuleLimit=5, WhenFull="reject")
    requests = [ip for ip in ADDRESSES for _ in range(5)]
    handlers = [isolated_api().lambda_handler for _ in requests]  # one Lambda environment per request

    def send(i: int) -> tuple[str, int, Any]:
        ip = requests[i]
        status, body = call("api_create_block.json", TOKEN, body={"ip": ip, "duration": 600}, handler=handlers[i])
        return ip, status, body

    # Every execution ends up applied (waiting) or rejected; none stays in the reserve/apply phase.
    def settled() -> bool:
        return all(b["state"] in ("active", "rejected") for b in stack.items("BLOCK#"))

    with observing(stack) as (seen, observations):
        with ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(send, range(len(requests))))
        wait_until(settled, 300, "blocks not yet applied or rejected")

    # Then: no observation ever saw a breach
    assert observations[0] >= 2  # it looked while the requests were in flight (fewer times on a busy machine)
    assert seen == []
    assert violations(stack) == []
    # Exactly RuleLimit addresses hold a block, one block each, in every NACL
    active = [b for b in stack.items("BLOCK#") if b["state"] == "active"]
    assert len(active) == 5
    assert len({b["cidr"] for b in active}) == 5
    for nacl_id in stack.nacl_ids:
        assert sorted(n for n, _, _ in stack.managed(nacl_id)) == [10, 11, 12, 13, 14]
    # Every answer is one a client can act on, and the 2xx ones name the active blocks
    assert {status for _, status, _ in answers} <= {200, 202, 409, 503}
    # A 2xx answer says "active" only for a block that is (others answered "pending" after the
    # API's short wait, which is true too: the client polls GET /blocks/{id}).
    ok = {body["ip"] for _, status, body in answers if status in (200, 202) and body["state"] == "active"}
    assert ok <= {b["cidr"] for b in active}
    # (or "releasing": a block being refused when the wait ran out, also true)
    assert {body["state"] for _, status, body in answers if status in (200, 202)} <= {"active", "pending", "releasing"}
    created = [body["id"] for _, status, body in answers if status == 202]
    assert len(created) == len(set(created))
    refused = [body for _, status, body in answers if status == 503]
    assert all(body["error"] == "capacity_exceeded" for body in refused)

    # After the blocks end (unblocked at once, each through its own Lambda environment), nothing is left
    def unblock(block: dict[str, Any]) -> str:
        _, body = call("api_delete_block.json", TOKEN, block_id=str(block["id"]), handler=isolated_api().lambda_handler)
        return str(body["state"])

    with ThreadPoolExecutor(max_workers=5) as pool:
        ended = list(pool.map(unblock, active))
    assert ended == ["unblocked"] * 5
    for block in active:
        assert stack.finished(stack.execution_arn(str(block["id"])), timeout=60)["status"] == "ABORTED"
    for nacl_id in stack.nacl_ids:
        assert stack.managed(nacl_id) == []
        assert stack.foreign(nacl_id) == stack.baseline[nacl_id]
    assert stack.items("SLOT#") == [] and stack.items("ADDR#") == []


def test_two_hundred_mixed_requests_keep_every_invariant(deploy: Callable[..., Stack], monkeypatch: Any) -> None:
    """Duplicates of one address (extensions), distinct addresses, and unblocks of blocks being applied."""
    from autoblock.handlers import sweeper, wiring
    from autoblock_local.emulator import FakeLambdaContext
    from autoblock_local.invoke import event

    stack = deploy(nacls=2, RuleLimit=5, WhenFull="reject")
    ops: list[tuple[str, str, int]] = []
    ops += [("block", "198.51.100.200", 4 + i % 5) for i in range(60)]  # one address: extensions
    ops += [("block", f"203.0.113.{100 + i}", 5) for i in range(100)]  # distinct addresses
    ops += [("unblock", f"203.0.113.{100 + i}", 0) for i in range(40)]  # unblock while being applied
    handlers = [isolated_api().lambda_handler for _ in ops]

    def send(i: int) -> int:
        kind, ip, duration = ops[i]
        if kind == "block":
            body = {"ip": ip, "duration": duration}
            return call("api_create_block.json", TOKEN, body=body, handler=handlers[i])[0]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            _, listed = call("api_list_blocks.json", TOKEN, handler=handlers[i])
            mine = [b for b in listed["blocks"] if b["ip"] == f"{ip}/32"]
            if mine:
                return call("api_delete_block.json", TOKEN, block_id=mine[0]["id"], handler=handlers[i])[0]
            time.sleep(0.05)
        return 0  # its block was refused (the range was full) before it could be unblocked

    def all_ended() -> bool:
        pages = stack.sfn.get_paginator("list_executions").paginate(stateMachineArn=stack.state_machine_arn)
        return all(e["status"] != "RUNNING" for page in pages for e in page["executions"])

    with observing(stack) as (seen, observations):
        with ThreadPoolExecutor(max_workers=50) as pool:
            statuses = list(pool.map(send, range(len(ops))))
        # Every execution ends (expiries are a few seconds; slower on a loaded machine), then one sweep
        wait_until(all_ended, 300, "executions still running")

    assert set(statuses) <= {0, 200, 202, 409, 503}
    assert statuses.count(200) + statuses.count(202) >= 5
    monkeypatch.setenv("SWEEPER_GRACE_SECONDS", "0")
    wiring.reset()
    sweeper.lambda_handler(event("schedule_sweep.json"), FakeLambdaContext())

    assert observations[0] >= 2  # it looked while the requests were in flight (fewer times on a busy machine)
    assert seen == []
    for nacl_id in stack.nacl_ids:
        assert stack.managed(nacl_id) == []
        assert stack.foreign(nacl_id) == stack.baseline[nacl_id]
    assert stack.items("SLOT#") == [] and stack.items("ADDR#") == []
    assert {b["state"] for b in stack.items("BLOCK#")} <= {"expired", "unblocked", "rejected", "failed"}
