"""The table and NACLs as a test sees them: what our code reads, items written by hand."""

from __future__ import annotations

from typing import Any

from autoblock_local.emulator import Stack
from bench.history import write_history


def assert_nothing_written(stack: Stack) -> None:
    """No table item, no NACL entry in the range, no foreign rule changed, no execution."""
    assert stack.items() == []
    for nacl_id in stack.nacl_ids:
        assert stack.managed(nacl_id) == []
        assert stack.foreign(nacl_id) == stack.baseline[nacl_id]
    assert stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"] == []


class ItemCounter:
    """Counts the DynamoDB items our code reads (register on ``after-call.dynamodb``)."""

    def __init__(self) -> None:
        self.items = 0
        self.calls: dict[str, int] = {}

    def __call__(self, **kwargs: Any) -> None:
        name, parsed = kwargs["model"].name, kwargs["parsed"]
        self.calls[name] = self.calls.get(name, 0) + 1
        if "Items" in parsed:
            self.items += len(parsed["Items"])
        elif "Item" in parsed:
            self.items += 1
        elif "Responses" in parsed:
            self.items += sum(len(v) for v in parsed["Responses"].values())


__all__ = ["ItemCounter", "assert_nothing_written", "write_history"]
