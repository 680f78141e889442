"""The emulator itself: it ends what it started, and nothing it does not serve leaves the machine."""

from __future__ import annotations

import threading
import time

import boto3
import pytest
from pytest_socket import disable_socket, enable_socket

from autoblock.handlers import wiring
from autoblock.models import BlockRequest
from autoblock_local.emulator import REGION, Stack, UnservedRequest, deploy_stack, emulated_aws, wait_until
from tests.conftest import RealEndpointRefused
from tests.support.faults import Faults


@pytest.fixture
def no_socket() -> object:
    """Any attempt to open a connection fails the test with pytest-socket's own error."""
    disable_socket()
    yield
    enable_socket()


def test_an_endpoint_the_emulator_does_not_serve_is_refused_before_anything_is_sent(no_socket: None) -> None:
    with emulated_aws():
        # moto answers any amazonaws.com host (404 for what it lacks); an endpoint elsewhere, as
        # AWS_ENDPOINT_URL or a profile's endpoint_url would give, is not its to answer
        elsewhere = boto3.client("dynamodb", region_name=REGION, endpoint_url="https://dynamodb.example.test")

        with pytest.raises(UnservedRequest, match=r"does not serve POST https://dynamodb\.example\.test/"):
            elsewhere.list_tables()


def test_a_client_used_after_the_emulator_closed_reaches_no_endpoint(no_socket: None) -> None:
    with emulated_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        assert ddb.list_tables()["TableNames"] == []

    with pytest.raises(RealEndpointRefused, match=r"POST https://dynamodb\.us-east-1\.amazonaws\.com/"):
        ddb.list_tables()


def events(stack: Stack, block_id: str) -> list[str]:
    history = stack.sfn.get_execution_history(executionArn=stack.execution_arn(block_id), maxResults=1000)
    return [e["type"] for e in history["events"]]


def test_closing_ends_every_execution_and_its_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    before = set(threading.enumerate())
    with emulated_aws():
        # Given: one execution in its Wait (600 s) and one in a Retry interval
        stack = deploy_stack(monkeypatch.setenv)
        run = wiring.lifecycle()
        waiting = run.registration.register(BlockRequest(ip="203.0.113.90", duration=600), source="test").block.id
        stack.start(waiting)
        wait_until(lambda: stack.path(stack.execution_arn(waiting))[-1:] == ["WaitUntilExpiry"], 30, "the Wait")
        Faults()("ec2.CreateNetworkAclEntry", "RequestLimitExceeded", times=-1)
        retrying = run.registration.register(BlockRequest(ip="203.0.113.91", duration=600), source="test").block.id
        stack.start(retrying)
        wait_until(lambda: "TaskFailed" in events(stack, retrying), 30, "a failed attempt")
        ours = [t for t in threading.enumerate() if t not in before]
        assert ours, "moto runs executions in threads"
        started = time.monotonic()
    # When: the emulator closed (it raises if an execution or one of its threads were left)
    closed_in = time.monotonic() - started

    # Then: every thread it started has ended, long before the Wait would have
    assert [t.name for t in ours if t.is_alive()] == []
    assert closed_in < 10
