"""Fault injection: AWS calls answered with an error, Lambda tasks failing, as AWS reports both."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from autoblock.handlers import wiring
from autoblock_local.emulator import load_template


@dataclass
class Calls:
    count: int = 0


class Faults:
    """faults("ec2.CreateNetworkAclEntry", "RequestLimitExceeded", times=1) makes our code's next AWS
    call(s) of that operation fail as AWS would answer, before botocore sends them (times=-1: for
    good); keyword arguments are the error's other response fields, as botocore parses them, e.g.
    ``CancellationReasons=[{"Code": "TransactionConflict"}]`` for a cancelled transaction.
    faults.lambda_task("TaskFunction", "Sandbox.Timedout") makes the task's next invocation(s)
    report that errorType. faults.clear() ends them all."""

    def __init__(self) -> None:
        self.session = boto3._get_default_session()._session
        self.registered: list[tuple[str, Any]] = []
        self.replaced: list[tuple[Any, str, Any]] = []

    def __call__(
        self,
        operation: str,
        code: str,
        times: int = 1,
        status: int = 400,
        when: Callable[[dict[str, Any]], bool] = lambda _: True,
        message: str = "injected by the test",
        **fields: Any,
    ) -> None:
        left = [times]

        def hook(**kwargs: Any) -> None:
            if left[0] != 0 and when(kwargs["params"].get("body") or {}):
                left[0] -= 1
                error: Any = {"Error": {"Code": code, "Message": message}, **fields}
                error["ResponseMetadata"] = {"HTTPStatusCode": status}
                raise ClientError(error, kwargs["model"].name)

        self.session.register(f"before-call.{operation}", hook)
        self.registered.append((f"before-call.{operation}", hook))
        wiring.reset()  # our clients are made again, with the hook

    def lambda_task(self, function: str, error_type: str, times: int = 1) -> None:
        """The function's handler (template.yaml's ``Handler``) raises an exception named
        ``error_type`` on its next ``times`` invocations: Lambda reports an unhandled exception's
        class name as the errorType, which is the error name the state machine's Retry sees."""
        module_name, _, attr = str(load_template()["Resources"][function]["Properties"]["Handler"]).rpartition(".")
        module = importlib.import_module(module_name)
        real = getattr(module, attr)
        error = type(error_type, (Exception,), {})
        left = [times]

        def failing(event: Any, context: Any) -> Any:
            if left[0] > 0:
                left[0] -= 1
                raise error("injected by the test")
            return real(event, context)

        setattr(module, attr, failing)
        self.replaced.append((module, attr, real))

    @contextlib.contextmanager
    def counting(self, service: str, operation: str) -> Iterator[Calls]:
        """Count our code's calls of one operation (each call as botocore makes it, retries aside)."""
        calls = Calls()

        def hook(**_: Any) -> None:
            calls.count += 1

        event_name = f"before-call.{service}.{operation}"
        self.session.register(event_name, hook)
        wiring.reset()
        try:
            yield calls
        finally:
            self.session.unregister(event_name, hook)

    def clear(self) -> None:
        for event_name, hook in self.registered:
            self.session.unregister(event_name, hook)
        self.registered.clear()
        for module, attr, real in reversed(self.replaced):
            setattr(module, attr, real)
        self.replaced.clear()
        wiring.reset()
