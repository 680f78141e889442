"""The state machine's tasks, in one function (one cold start, one warm pool): the ASL names the
task in the payload. Reserve, Apply, Expire and Compensate take the block's ticket and return it
updated; FromFinding takes the EventBridge event.

Errors propagate under their class names: the ASL retries TransientAwsError (and Lambda's own
service errors) and sends everything else to Compensate.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from autoblock.errors import BlockNotFound
from autoblock.handlers.wiring import lifecycle
from autoblock.logic import clock
from autoblock.models import TaskInput, Ticket

logger = Logger()
CORRELATION_PATH = "execution_id"  # the ASL passes $$.Execution.Id under this name


def run(task: TaskInput) -> dict[str, Any]:
    """One task of a block's execution."""
    blocks = lifecycle()
    ticket = task.ticket
    match task.task:
        case "reserve":
            done = blocks.reserve(ticket)
        case "apply":
            done = blocks.apply(ticket)
        case "expire":
            done = Ticket.of(blocks.expire(ticket.block_id, due=clock.from_iso_z(ticket.expires_at)))
        case "compensate":
            try:
                done = Ticket.of(blocks.compensate(ticket.block_id, task.error.error, _message(task.error.cause)))
            except BlockNotFound:
                done = ticket.model_copy(update={"state": "failed"})  # nothing was ever written
    return done.model_dump()


def from_finding(event: dict[str, Any]) -> dict[str, Any]:
    """The finding as EventBridge delivered it: under "event" from the ASL (which adds the execution
    id), or the event itself (sam local invoke -e events/guardduty_*.json)."""
    from autoblock.logic.guardduty import MalformedFinding, extract
    from autoblock.logic.intake import handle_finding

    finding = event if "detail-type" in event else event.get("event", {})
    try:
        extraction = extract(finding, lifecycle().settings.policy)
    except MalformedFinding as exc:
        logger.warning("malformed finding: nothing done", extra={"reason": str(exc)})
        raise  # the ASL catches it and ends the execution; retrying would fail the same way
    return handle_finding(extraction, lifecycle()).as_dict()


@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("task") == "from_finding" or "detail-type" in event:
        return from_finding(event)
    return run(TaskInput.model_validate(event))


def _message(cause: str) -> str:
    """A Lambda error's Cause is a JSON document; keep its message only (no stack trace)."""
    try:
        return str(json.loads(cause).get("errorMessage", ""))[:500]
    except (ValueError, AttributeError):
        return cause[:500]
