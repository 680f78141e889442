"""Every AWS call a process makes, and the request → deny entry probe that runs on any checkout.

``Recorder`` patches ``botocore.client.BaseClient._make_api_call`` while it records, so it sees the
calls of every boto3 session in the process (Powertools' ``parameters.get_secret`` makes its own
session, which a hook on the default session misses), the state machine's ``Lambda.Invoke`` among
them. The benchmark's own looks at the stack run inside ``quiet()`` and are not recorded.

Run as a script, the probe measures request → deny entry on the checkout it is given, with that
checkout's emulator and handlers, so the design before the lean core (commit ec32605, extracted to a
temporary folder by bench/run.py) and today's are measured by the same code in the same session::

    python bench/probe.py --tree /tmp/before --requests 50

It imports nothing from this repository but the checkout's ``autoblock`` and ``autoblock_local``
and their contract: ``emulated_aws``, ``deploy_stack``, ``TOKEN``, ``FakeLambdaContext``, the API's
``lambda_handler`` and the ``events/`` fixtures.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from botocore.client import BaseClient

ENTRY = "EC2.CreateNetworkAclEntry"
INVOKE = "Lambda.Invoke"  # the state machine invoking a task: a Lambda invocation, not a call of ours
RULE_LIMIT = 18


@dataclass
class Call:
    name: str  # ServiceId.Operation, e.g. DynamoDB.TransactWriteItems
    start: float  # time.monotonic()
    thread: str
    end: float | None = None  # None while the call is under way


class Recorder:
    """Every AWS API call made in this process while ``recording()`` is open, through any session."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._done = threading.Condition()
        self._quiet = threading.local()

    @contextmanager
    def recording(self) -> Iterator[Recorder]:
        original = vars(BaseClient)["_make_api_call"]
        recorder = self

        def make_api_call(client: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
            if getattr(recorder._quiet, "on", False):
                return original(client, operation_name, api_params)
            service = client.meta.service_model.service_id.replace(" ", "")
            call = Call(f"{service}.{operation_name}", time.monotonic(), threading.current_thread().name)
            with recorder._done:
                recorder.calls.append(call)
            try:
                return original(client, operation_name, api_params)
            finally:
                with recorder._done:
                    call.end = time.monotonic()
                    recorder._done.notify_all()

        with mock.patch.object(BaseClient, "_make_api_call", make_api_call):
            yield self

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """The benchmark's own looks at the stack (polling, cleaning up): not recorded."""
        self._quiet.on = True
        try:
            yield
        finally:
            self._quiet.on = False

    def since(self, start: float, until: float | None = None) -> list[Call]:
        """The calls begun in [start, until], in the order they began."""
        with self._done:
            calls = [c for c in self.calls if c.start >= start and (until is None or c.start <= until)]
        return sorted(calls, key=lambda c: c.start)

    def wait_for(self, name: str, after: float, timeout: float = 60) -> Call:
        """The first call ``name`` begun after ``after``, once it has returned."""
        deadline = time.monotonic() + timeout
        with self._done:
            while True:
                found = [c for c in self.calls if c.name == name and c.start >= after and c.end is not None]
                if found:
                    return min(found, key=lambda c: c.start)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {name} within {timeout} s")
                self._done.wait(left)


def until_entry(calls: list[Call]) -> list[Call]:
    """The calls up to and including the first CreateNetworkAclEntry."""
    names = [c.name for c in calls]
    return calls[: names.index(ENTRY) + 1] if ENTRY in names else calls


def ours(calls: list[Call]) -> list[str]:
    """The AWS calls our code makes (the state machine's Lambda.Invoke is an invocation, counted apart)."""
    return [c.name for c in calls if c.name != INVOKE]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- the probe, on any checkout -------------------------------------------------------------------


def api_request(root: Path, name: str, body: Any = None, block_id: str | None = None) -> dict[str, Any]:
    """An events/ fixture as API Gateway sends it, with the emulator's token and the given body."""
    emulator = importlib.import_module("autoblock_local.emulator")
    request: dict[str, Any] = copy.deepcopy(json.loads((root / "events" / name).read_text()))
    request["headers"]["Authorization"] = f"Bearer {emulator.TOKEN}"
    request["multiValueHeaders"] = {k: [v] for k, v in request["headers"].items()}
    if body is not None:
        request["body"] = json.dumps(body)
    if block_id is not None:
        request["pathParameters"] = {"block_id": block_id}
        request["path"] = f"/blocks/{block_id}"
    return request


def request_to_entry(root: Path, requests: int) -> dict[str, Any]:
    """``requests`` + 1 POST /blocks one after the other on one warm API (the first is the cold one):
    calls and time from the POST to its CreateNetworkAclEntry returning. Each block is unblocked
    (unrecorded) once active, so the range never fills."""
    emulator = importlib.import_module("autoblock_local.emulator")
    wiring = importlib.import_module("autoblock.handlers.wiring")
    api = importlib.import_module("autoblock.handlers.api")
    allow_all = [r for r in emulator.FOREIGN_RULES if r["RuleAction"] == "allow"]
    recorder = Recorder()
    rounds: list[dict[str, Any]] = []
    with emulator.emulated_aws():
        stack = emulator.deploy_stack(os.environ.__setitem__, nacls=1, foreign_rules=allow_all, RuleLimit=RULE_LIMIT)
        os.environ["API_WAIT_SECONDS"] = "0"  # the old API's server-side wait for the entry, off (today's has none)
        wiring.reset()
        with recorder.recording():
            for i in range(requests + 1):
                ip = f"198.51.{100 + i // 250}.{i % 250 + 1}"
                request = api_request(root, "api_create_block.json", {"ip": ip, "duration": 600})
                started = time.monotonic()
                answer = api.lambda_handler(request, emulator.FakeLambdaContext())
                answered = time.monotonic()
                assert answer["statusCode"] in (200, 201, 202), answer
                block_id = json.loads(answer["body"])["id"]
                entry = recorder.wait_for(ENTRY, started)
                calls = until_entry(recorder.since(started, entry.start))
                rounds.append(
                    {
                        "calls": ours(calls),
                        "invocations": 1 + sum(c.name == INVOKE for c in calls),  # the API + the tasks
                        "answer_s": answered - started,
                        "entry_s": (entry.end or started) - started,
                    }
                )
                with recorder.quiet():
                    emulator.wait_until(lambda: stack.block(block_id)["state"] == "active", 60, "active")  # noqa: B023
                    unblock = api_request(root, "api_delete_block.json", block_id=block_id)
                    assert api.lambda_handler(unblock, emulator.FakeLambdaContext())["statusCode"] == 200
            lifecycle = whole_lifecycle(root, stack, recorder)
    cold, warm = rounds[0], rounds[1:]
    entry_ms = [r["entry_s"] * 1000 for r in warm]
    answer_ms = [r["answer_s"] * 1000 for r in warm]
    return {
        "requests": len(warm),
        "cold": {"calls": cold["calls"], "invocations": cold["invocations"], "entry_ms": round(cold["entry_s"] * 1000)},
        "warm": {
            "calls": warm[0]["calls"],
            "invocations": warm[0]["invocations"],
            "calls_per_request": dict(sorted(Counter(len(r["calls"]) for r in warm).items())),
        },
        "entry_ms": {"p50": round(percentile(entry_ms, 0.5)), "p99": round(percentile(entry_ms, 0.99))},
        "answer_ms": {"p50": round(percentile(answer_ms, 0.5)), "p99": round(percentile(answer_ms, 0.99))},
        "lifecycle": lifecycle,
    }


def whole_lifecycle(root: Path, stack: Any, recorder: Recorder) -> dict[str, Any]:
    """One more block (warm API), of 2 s, from its request to its release: every call, the Lambda
    invocations before its entry and in all, the states its execution entered."""
    emulator = importlib.import_module("autoblock_local.emulator")
    api = importlib.import_module("autoblock.handlers.api")
    started = time.monotonic()
    request = api_request(root, "api_create_block.json", {"ip": "203.0.113.7", "duration": 2})
    answer = api.lambda_handler(request, emulator.FakeLambdaContext())
    assert answer["statusCode"] in (200, 201, 202), answer
    block_id = json.loads(answer["body"])["id"]
    with recorder.quiet():
        arn = stack.execution_arn(block_id)
        assert stack.finished(arn, 60)["status"] == "SUCCEEDED"
        events = stack.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    calls = recorder.since(started)
    before_entry = until_entry(calls)
    return {
        "calls": ours(calls),
        "invocations_before_entry": 1 + sum(c.name == INVOKE for c in before_entry),
        "invocations": 1 + sum(c.name == INVOKE for c in calls),
        "state_transitions": sum(e["type"].endswith("StateEntered") for e in events),
        "path": [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, required=True, help="the checkout to measure")
    parser.add_argument("--requests", type=int, default=50, help="warm requests (after one cold one)")
    args = parser.parse_args(argv)
    root = args.tree.resolve()
    sys.path[:] = [str(root / "functions"), str(root), *(p for p in sys.path[1:] if Path(p).resolve() != root)]
    os.environ.setdefault("TZ", "UTC")
    time.tzset()
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "autoblock",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    )
    with contextlib.redirect_stdout(sys.stderr):  # the handlers' metric lines
        result = request_to_entry(root, args.requests)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
