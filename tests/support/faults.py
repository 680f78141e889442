"""Fault injection: AWS calls answered with an error, Lambda tasks failing, as AWS reports both; a
second writer racing ours on a WAF IP set."""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

from autoblock.handlers import wiring
from autoblock_local.emulator import Stack, WafSet, load_template

FOREIGN_V4 = "198.51.100.77/32"  # what the racing writer adds to an IPv4 set: not ours, never to be kept
FOREIGN_V6 = "2001:db8:ffff::77/128"
_RACING: contextvars.ContextVar[bool] = contextvars.ContextVar("_RACING", default=False)


@dataclass
class Race:
    """What a racing writer did: each foreign update, as (set name, address added)."""

    updates: list[tuple[str, str]] = field(default_factory=list)

    @property
    def added(self) -> list[str]:
        return [address for _, address in self.updates]


@dataclass
class Calls:
    count: int = 0


class Faults:
    """faults("ec2.CreateNetworkAclEntry", "RequestLimitExceeded", times=1) makes our code's next AWS
    call(s) of that operation fail as AWS would answer, before botocore sends them (times=-1: for
    good); keyword arguments are the error's other response fields, as botocore parses them, e.g.
    ``CancellationReasons=[{"Code": "TransactionConflict"}]`` for a cancelled transaction.
    faults.lambda_task("TaskFunction", "Sandbox.Timedout") makes the task's next invocation(s)
    report that errorType. ``with faults.racing_writer(stack):`` makes another writer update a WAF
    IP set just before our next UpdateIPSet of it. faults.clear() ends them all."""

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
    def counting(
        self, service: str, operation: str, when: Callable[[dict[str, Any]], bool] = lambda _: True
    ) -> Iterator[Calls]:
        """Count our code's calls of one operation (each call as botocore makes it, retries aside)
        whose request ``when`` accepts (given the request's parameters)."""
        calls = Calls()

        def hook(**kwargs: Any) -> None:
            body = kwargs["params"].get("body") or {}
            if when(json.loads(body) if isinstance(body, bytes | str) else body):
                calls.count += 1

        event_name = f"before-call.{service}.{operation}"
        self.session.register(event_name, hook)
        wiring.reset()
        try:
            yield calls
        finally:
            self.session.unregister(event_name, hook)

    @contextlib.contextmanager
    def racing_writer(
        self,
        stack: Stack,
        which: str | int | WafSet | None = None,
        index: int = 1,
        times: int = 1,
        address: str | None = None,
    ) -> Iterator[Race]:
        """Inside, the next ``times`` (-1: every) UpdateIPSet our code makes on one of the stack's IP
        sets (``which``: a name, or family and ``index``; None: any of them) is preceded by another
        writer's update of that set through the API, which adds ``address`` (FOREIGN_V4 or FOREIGN_V6
        by default): the set's lock token changes after we read it, so our update fails with
        WAFOptimisticLockException, as it would on AWS when someone else edits the set meanwhile. The
        foreign update is outside the emulator's rate limit (``Stack.foreign_waf_update``), so ours
        meets the lock conflict rather than a throttle. Yields what the foreign writer did."""
        target = None if which is None else stack.waf_set(which, index)
        race, left, lock = Race(), [times], threading.Lock()

        def hook(**kwargs: Any) -> None:
            if _RACING.get():
                return
            body = json.loads(kwargs["params"]["body"] or b"{}")
            if target is not None and (body.get("Name"), body.get("Id")) != (target.name, target.id):
                return
            with lock:  # our writers may run on several threads: exactly ``times`` races
                if left[0] == 0:
                    return
                left[0] -= 1
            found = stack.waf_set(str(body["Name"]))
            foreign = address or (FOREIGN_V6 if found.family == 6 else FOREIGN_V4)
            racing = _RACING.set(True)  # the foreign writer's own UpdateIPSet is not raced
            try:
                stack.foreign_waf_update(found, add=(foreign,))
            finally:
                _RACING.reset(racing)
            race.updates.append((found.name, foreign))

        event = "before-call.wafv2.UpdateIPSet"
        self.session.register(event, hook)
        self.registered.append((event, hook))
        wiring.reset()  # our clients are made again, with the hook
        try:
            yield race
        finally:
            self.session.unregister(event, hook)
            self.registered.remove((event, hook))
            wiring.reset()

    def clear(self) -> None:
        for event_name, hook in self.registered:
            self.session.unregister(event_name, hook)
        self.registered.clear()
        for module, attr, real in reversed(self.replaced):
            setattr(module, attr, real)
        self.replaced.clear()
        wiring.reset()
