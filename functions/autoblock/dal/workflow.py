"""Step Functions: start a block's execution, stop it when the block is released by hand."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from autoblock.dal.aws import client, error_code
from autoblock.errors import WorkflowError
from autoblock.models import Ticket


def execution_arn(state_machine_arn: str, name: str) -> str:
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"


class Workflow:
    def __init__(self, state_machine_arn: str) -> None:
        self.arn = state_machine_arn

    @property
    def sfn(self) -> Any:
        return client("stepfunctions")

    def start(self, ticket: Ticket) -> None:
        """Start the block's execution, named after the block (the idempotency key), with its ticket."""
        try:
            self.sfn.start_execution(stateMachineArn=self.arn, name=ticket.block_id, input=ticket.model_dump_json())
        except (ClientError, BotoCoreError) as exc:
            code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
            if code == "ExecutionAlreadyExists":
                return
            raise WorkflowError(f"could not start the block's workflow: {code}") from exc

    def status(self, block_id: str) -> str | None:
        """The status of the block's execution (RUNNING, SUCCEEDED, FAILED, ABORTED…), None if there is none."""
        try:
            answer = self.sfn.describe_execution(executionArn=execution_arn(self.arn, block_id))
        except ClientError as exc:
            if error_code(exc) == "ExecutionDoesNotExist":
                return None
            raise
        return str(answer["status"])

    def stop(self, block_id: str, error: str, cause: str) -> bool:
        """Stop the block's waiting execution; False if it had already ended or cannot be stopped."""
        try:
            self.sfn.stop_execution(executionArn=execution_arn(self.arn, block_id), error=error, cause=cause)
        except (ClientError, BotoCoreError):
            return False
        return True
