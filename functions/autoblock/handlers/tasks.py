"""The state machine's Lambda tasks. Each takes {"block_id"} and returns TaskOutput.

Errors propagate under their class names: the ASL retries TransientAwsError (and Lambda's own
service errors) and sends everything else to Compensate.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from autoblock.errors import REJECTIONS, BlockNotFound
from autoblock.handlers.wiring import lifecycle, workflow
from autoblock.logic.addresses import blockable
from autoblock.logic.guardduty import MalformedFinding, extract
from autoblock.logic.intake import handle_finding
from autoblock.models import LIVE_STATES, CompensateInput, TaskInput, TaskOutput, settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
CORRELATION_PATH = "execution_id"  # the ASL passes $$.Execution.Id under this name


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=TaskInput)
def validate(event: TaskInput, context: LambdaContext) -> dict[str, Any]:
    """Re-check a registered block against the current policy before anything is reserved."""
    block = lifecycle().get(event.block_id)
    if block.state == "pending":
        blockable(block.cidr, settings().policy)  # PolicyViolation: the allowlist changed meanwhile
    return TaskOutput.of(block).model_dump()


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=TaskInput)
def reserve(event: TaskInput, context: LambdaContext) -> dict[str, Any]:
    return TaskOutput.of(lifecycle().reserve(event.block_id)).model_dump()


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=TaskInput)
def apply(event: TaskInput, context: LambdaContext) -> dict[str, Any]:
    block = lifecycle().apply(event.block_id)
    if block.state == "active":
        metrics.add_metric(name="BlocksApplied", unit=MetricUnit.Count, value=1)
    return TaskOutput.of(block).model_dump()


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=TaskInput)
def expire(event: TaskInput, context: LambdaContext) -> dict[str, Any]:
    block = lifecycle().expire(event.block_id)
    if block.state == "expired":
        metrics.add_metric(name="BlocksExpired", unit=MetricUnit.Count, value=1)
    return TaskOutput.of(block).model_dump()


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=CompensateInput)
def compensate(event: CompensateInput, context: LambdaContext) -> dict[str, Any]:
    """Undo whatever a failed execution did: entries, rule numbers, the address lock."""
    final_state = "rejected" if event.error.error in REJECTIONS else "failed"
    reason = f"{event.error.error}: {_message(event.error.cause)}"
    logger.warning("compensating", extra={"block_id": event.block_id, "error": event.error.error})
    name = "BlocksRejected" if final_state == "rejected" else "BlocksFailed"
    with single_metric(name=name, unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="Reason", value=event.error.error[:64])
    try:
        block = lifecycle().release(event.block_id, final_state, reason, from_states=LIVE_STATES)
    except BlockNotFound:
        return {"block_id": event.block_id, "state": "failed", "expires_at": ""}
    return TaskOutput.of(block).model_dump()


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path="event.id")
@tracer.capture_lambda_handler(capture_response=False)
def from_finding(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The finding as EventBridge delivered it: under "event" from the ASL (which adds the execution
    id), or the event itself (sam local invoke -e events/guardduty_*.json)."""
    finding = event if "detail-type" in event else event.get("event", {})
    try:
        extraction = extract(finding, settings().policy)
    except MalformedFinding as exc:
        logger.warning("malformed finding: nothing done", extra={"reason": str(exc)})
        raise  # the ASL catches it and ends the execution; retrying would fail the same way
    outcome = handle_finding(extraction, lifecycle(), workflow().start)
    if outcome.extended:
        metrics.add_metric(name="BlocksExtended", unit=MetricUnit.Count, value=len(outcome.extended))
    return outcome.as_dict()


def _message(cause: str) -> str:
    """A Lambda error's Cause is a JSON document; keep its message only (no stack trace)."""
    try:
        return str(json.loads(cause).get("errorMessage", ""))[:500]
    except (ValueError, AttributeError):
        return cause[:500]
