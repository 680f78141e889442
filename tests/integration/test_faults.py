"""Fault injection on every AWS call of a block's lifecycle.

Once (throttling, a 5xx, a timeout): the workflow retries and the block is applied and removed on
time. For good: after the workflow gave up and one sweep ran, the managed range holds exactly the
entries of the active blocks, and nothing foreign was touched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from autoblock.handlers import sweeper, wiring
from autoblock.models import BlockRequest
from autoblock_local.emulator import FakeLambdaContext
from autoblock_local.invoke import event
from tests.integration.conftest import Faults, Stack, wait_until
from tests.integration.test_sweeper import agree

# (operation, error code, HTTP status): each one is on the path from request to release.
AWS_CALLS = [
    ("ec2.CreateNetworkAclEntry", "RequestLimitExceeded", 503),  # Apply
    ("dynamodb.TransactWriteItems", "ProvisionedThroughputExceededException", 400),  # Apply: active; Expire: finish
    ("dynamodb.UpdateItem", "ThrottlingException", 400),  # Expire: releasing
    ("ec2.DescribeNetworkAcls", "Unavailable", 503),  # Expire looks before it deletes
    ("ec2.DeleteNetworkAclEntry", "InternalError", 500),  # Expire
]
# Every task runs in TaskFunction: the first one the execution invokes (Apply) meets the fault.
LAMBDA_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.TooManyRequestsException",
    "Sandbox.Timedout",
    "Lambda.AWSLambdaException",
]


def register(ip: str, duration: int) -> str:
    return wiring.lifecycle().registration.register(BlockRequest(ip=ip, duration=duration), source="test").block.id


def start(stack: Stack, ip: str, duration: int = 3) -> str:
    block_id = register(ip, duration)
    stack.start(block_id)
    return block_id


def failed_tasks(stack: Stack, block_id: str) -> list[str]:
    history = stack.sfn.get_execution_history(executionArn=stack.execution_arn(block_id), maxResults=1000)
    return [e["taskFailedEventDetails"]["error"] for e in history["events"] if e["type"] == "TaskFailed"]


def nothing_left(stack: Stack, block_id: str) -> None:
    assert stack.block(block_id)["state"] == "expired"
    for nacl_id in stack.nacl_ids:
        assert stack.managed(nacl_id) == []
        assert stack.foreign(nacl_id) == stack.baseline[nacl_id]
    assert stack.items("SLOT#") == [] and stack.items("ADDR#") == []


@pytest.mark.parametrize(("operation", "code", "status"), AWS_CALLS, ids=[c[0] for c in AWS_CALLS])
def test_an_aws_call_failing_once_is_retried(
    stack: Stack, fault: Faults, operation: str, code: str, status: int
) -> None:
    block_id = start(stack, "203.0.113.60")  # registered before the fault: the API's own calls are not the subject
    fault(operation, code, times=1, status=status)

    result = stack.finished(stack.execution_arn(block_id), timeout=40)

    assert result["status"] == "SUCCEEDED"
    assert failed_tasks(stack, block_id) == ["TransientAwsError"]
    assert stack.path(stack.execution_arn(block_id))[-1] == "Released"
    nothing_left(stack, block_id)


@pytest.mark.parametrize("error", LAMBDA_ERRORS)
def test_a_lambda_task_failing_once_is_retried(stack: Stack, fault: Faults, error: str) -> None:
    fault.lambda_task("TaskFunction", error)
    block_id = start(stack, "203.0.113.61")

    result = stack.finished(stack.execution_arn(block_id), timeout=40)

    assert result["status"] == "SUCCEEDED"
    assert failed_tasks(stack, block_id) == [error]
    nothing_left(stack, block_id)


def sweep_once(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("SWEEPER_GRACE_SECONDS", "0")
    wiring.reset()
    return sweeper.lambda_handler(event("schedule_sweep.json"), FakeLambdaContext())


FOR_GOOD: list[tuple[str, Callable[[Faults], None]]] = [
    ("CreateNetworkAclEntry", lambda f: f("ec2.CreateNetworkAclEntry", "RequestLimitExceeded", times=-1)),
    ("DeleteNetworkAclEntry", lambda f: f("ec2.DeleteNetworkAclEntry", "InternalError", times=-1, status=500)),
    ("TransactWriteItems", lambda f: f("dynamodb.TransactWriteItems", "ThrottlingException", times=-1)),
    ("UpdateItem", lambda f: f("dynamodb.UpdateItem", "InternalServerError", times=-1, status=500)),
    ("TaskFunction", lambda f: f.lambda_task("TaskFunction", "Lambda.ServiceException", times=20)),
]


@pytest.mark.parametrize("inject", [f[1] for f in FOR_GOOD], ids=[f[0] for f in FOR_GOOD])
def test_an_aws_call_failing_for_good_converges_after_one_sweep(
    stack: Stack, fault: Faults, monkeypatch: pytest.MonkeyPatch, inject: Callable[[Faults], None]
) -> None:
    # Given: a healthy block in place, and a second one started while the call fails for good
    healthy = start(stack, "198.51.100.70", duration=600)
    wait_until(lambda: stack.block(healthy)["state"] == "active", 20, "the healthy block to be applied")
    broken = register("203.0.113.62", duration=2)
    inject(fault)
    stack.start(broken)

    result = stack.finished(stack.execution_arn(broken), timeout=120)
    assert result["status"] == "FAILED"
    fault.clear()  # the service recovers

    sweep_once(stack, monkeypatch)

    agree(stack)
    assert stack.block(healthy)["state"] == "active"
    assert stack.block(broken)["state"] in ("failed", "expired")
    assert all(cidr != "203.0.113.62/32" for n in stack.nacl_ids for _, _, cidr in stack.managed(n))
    assert [i["block_id"] for i in stack.items("ADDR#")] == [healthy]


def test_an_injected_error_carries_the_fields_aws_sends_with_it(stack: Stack, fault: Faults) -> None:
    # A cancelled transaction says why, item by item, beside its code
    reasons = [{"Code": "None"}, {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}]
    fault("dynamodb.TransactWriteItems", "TransactionCanceledException", CancellationReasons=reasons)
    ddb = boto3.client("dynamodb", region_name="us-east-1")  # made after the fault, as our clients are

    with pytest.raises(ClientError) as raised:
        ddb.transact_write_items(
            TransactItems=[{"Put": {"TableName": stack.table_name, "Item": {"pk": {"S": "x"}, "sk": {"S": "y"}}}}]
        )

    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert raised.value.response["CancellationReasons"] == reasons
    assert stack.items() == []  # refused before it was sent
