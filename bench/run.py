"""make bench: autoblock measured on emulated AWS (moto, the real ASL, the real handlers), side by side
with the seed's design (bench/baseline.py), on the same workloads in the same run.

Writes docs/benchmarks.json and docs/benchmarks.md. Counts and ratios are the figures; wall times
are this machine's and only compare runs made together. ``--smoke`` runs tiny sizes (the test suite
does, so the benchmark does not rot).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
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

import boto3  # noqa: E402

from autoblock.handlers import sweeper, wiring  # noqa: E402
from autoblock.models import BlockRequest  # noqa: E402
from autoblock_local import emulator  # noqa: E402
from autoblock_local.emulator import (  # noqa: E402
    TOKEN,
    FakeLambdaContext,
    Stack,
    deploy_stack,
    emulated_aws,
    wait_until,
)
from autoblock_local.invariants import violations  # noqa: E402
from autoblock_local.invoke import call, event, isolated_api  # noqa: E402
from bench import cost  # noqa: E402
from bench.baseline import Seed, create_table  # noqa: E402

SIZES: dict[str, dict[str, Any]] = {
    "full": {"lag_blocks": 50, "burst_requests": 1000, "burst_addresses": 300, "histories": [10, 1000, 100_000]},
    "smoke": {"lag_blocks": 4, "burst_requests": 24, "burst_addresses": 8, "histories": [10, 100]},
}
RULE_LIMIT = 18
# A NACL as most VPCs have it: allow all, in and out. With RuleLimit 18 that is 19 of the 20 rules
# AWS allows per direction and address family (the emulator enforces that quota as AWS does).
ALLOW_ALL = [r for r in emulator.FOREIGN_RULES if r["RuleAction"] == "allow"]


class Calls:
    """Every AWS call our code makes, by service and operation, in order (a botocore event hook)."""

    def __init__(self) -> None:
        self.log: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    def __call__(self, **kwargs: Any) -> None:
        model = kwargs["model"]
        name = f"{model.service_model.service_id.replace(' ', '')}.{model.name}"
        with self.lock:
            self.log.append((time.monotonic(), name))

    def counts(self, until: float | None = None, exclude: tuple[str, ...] = ("Lambda.",)) -> dict[str, int]:
        with self.lock:
            names = [n for t, n in self.log if (until is None or t <= until) and not n.startswith(exclude)]
        return dict(sorted(Counter(names).items()))


class ItemsRead:
    """The DynamoDB items our code reads (an ``after-call.dynamodb`` hook)."""

    def __init__(self) -> None:
        self.items = 0

    def __call__(self, **kwargs: Any) -> None:
        parsed = kwargs["parsed"]
        self.items += len(parsed.get("Items", ())) + ("Item" in parsed)
        self.items += sum(len(v) for v in parsed.get("Responses", {}).values())


def write_history(stack: Stack, first: int, last: int) -> None:
    """Ended blocks number first … last-1, written straight into the table: the history a sweep
    must not read."""
    with stack.ddb.Table(stack.table_name).batch_writer() as batch:
        for i in range(first, last):
            block_id = f"{i:032x}"
            batch.put_item(
                Item={
                    "pk": f"BLOCK#{block_id}",
                    "sk": "BLOCK",
                    "id": block_id,
                    "cidr": f"198.51.100.{i % 250}/32",
                    "family": 4,
                    "direction": "ingress",
                    "nacl_ids": stack.nacl_ids,
                    "state": "expired",
                    "created_at": 1_700_000_000 + i,
                    "expires_at": 1_700_000_600 + i,
                    "rules": {},
                    "ttl": 1_900_000_000,
                }
            )


@contextmanager
def counting() -> Iterator[Calls]:
    calls = Calls()
    session = boto3._get_default_session()._session
    session.register("before-call", calls)
    wiring.reset()  # our clients are made again, with the hook
    try:
        yield calls
    finally:
        session.unregister("before-call", calls)
        wiring.reset()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def setenv(key: str, value: str) -> None:
    os.environ[key] = value


# -- autoblock ------------------------------------------------------------------------------------


def lifecycle_counts() -> dict[str, Any]:
    """One block through the API, applied, expired, released: calls, transitions, invocations."""
    with emulated_aws():
        stack = deploy_stack(setenv, nacls=1, foreign_rules=ALLOW_ALL, RuleLimit=RULE_LIMIT)
        setenv("API_WAIT_SECONDS", "0")
        emulator.INVOCATIONS.clear()
        with counting() as calls:
            status, body = call("api_create_block.json", TOKEN, body={"ip": "203.0.113.7", "duration": 2})
            assert status == 202, body
            applied = wait_until(lambda: stack.managed(stack.nacl_ids[0]) and time.monotonic(), 30, "entry")
            execution = stack.execution_arn(body["id"])
            assert stack.finished(execution, 60)["status"] == "SUCCEEDED"
        critical = [n for t, n in calls.log if t <= applied and not n.startswith("Lambda.")]
        until_entry = critical[: critical.index("EC2.CreateNetworkAclEntry") + 1]
        history = stack.sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
        return {
            "critical_path_calls": dict(sorted(Counter(until_entry).items())),
            "critical_path_total": len(until_entry),
            "lifecycle_calls": calls.counts(),
            "lifecycle_total": sum(calls.counts().values()),
            "state_transitions": sum(e["type"].endswith("StateEntered") for e in history),
            "lambda_invocations": dict(sorted(emulator.INVOCATIONS.items())),
            "path": stack.path(execution),
        }


def expiry_lag(blocks: int) -> dict[str, Any]:
    """Blocks of 3-6 s, half ingress and half egress, in waves that fit the NACL's quota: time from
    expires_at to the entry being gone."""
    lags: list[float] = []
    with emulated_aws():
        stack = deploy_stack(setenv, nacls=1, foreign_rules=ALLOW_ALL, RuleLimit=RULE_LIMIT)
        run = wiring.lifecycle()
        wave = 2 * RULE_LIMIT  # RULE_LIMIT per direction
        for first in range(0, blocks, wave):
            expiries: dict[tuple[str, bool], int] = {}
            for i in range(first, min(blocks, first + wave)):
                egress = i % 2 == 1
                request = BlockRequest(
                    ip=f"198.51.100.{i + 1}", duration=3 + i % 4, direction="egress" if egress else "ingress"
                )
                block = run.registration.register(request, source="bench").block
                expiries[(block.cidr, egress)] = block.expires_at
                stack.start(block.id)
            gone: dict[tuple[str, bool], float] = {}
            seen_present: set[tuple[str, bool]] = set()
            deadline = time.time() + 60
            while len(gone) < len(expiries) and time.time() < deadline:
                present = {(cidr, egress) for _, egress, cidr in stack.managed(stack.nacl_ids[0])}
                now = time.time()
                seen_present |= present
                for key in seen_present - present - gone.keys():
                    gone[key] = now
                time.sleep(0.05)
            lags += [gone[k] - expiries[k] for k in gone]
    return {
        "blocks": blocks,
        "removed": len(lags),
        "p50_s": round(percentile(lags, 0.5), 2),
        "p99_s": round(percentile(lags, 0.99), 2),
        "max_s": round(max(lags), 2),
        "early": sum(lag < 0 for lag in lags),
    }


def burst(requests: int, addresses: int) -> dict[str, Any]:
    """`requests` API requests for `addresses` addresses at once, against RuleLimit 18."""
    with emulated_aws():
        stack = deploy_stack(setenv, nacls=1, foreign_rules=ALLOW_ALL, RuleLimit=RULE_LIMIT, WhenFull="reject")
        setenv("API_WAIT_SECONDS", "0")
        wiring.reset()
        local = threading.local()
        stop, seen, observations = threading.Event(), list[str](), [0]

        def observe() -> None:
            while not stop.is_set():
                seen.extend(violations(stack))
                observations[0] += 1

        def send(i: int) -> int:
            if not hasattr(local, "handler"):
                local.handler = isolated_api().lambda_handler
            body = {"ip": f"203.0.{113 - (i % addresses) // 250}.{(i % addresses) % 250 + 1}", "duration": 600}
            return call("api_create_block.json", TOKEN, body=body, handler=local.handler)[0]

        observer = threading.Thread(target=observe)
        with counting() as calls:
            observer.start()
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=32) as pool:
                statuses = Counter(pool.map(send, range(requests)))
            answered = time.monotonic() - started
            wait_until(
                lambda: all(b["state"] in ("active", "rejected", "failed") for b in stack.items("BLOCK#")),
                300,
                "burst blocks pending",
            )
            settled = time.monotonic() - started
        stop.set()
        observer.join()
        blocks = Counter(str(b["state"]) for b in stack.items("BLOCK#"))
        total_calls = sum(calls.counts().values())
        return {
            "requests": requests,
            "addresses": addresses,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "blocks": dict(sorted(blocks.items())),
            "entries": len(stack.managed(stack.nacl_ids[0])),
            "answered_s": round(answered, 1),
            "settled_s": round(settled, 1),
            "aws_calls_per_request": round(total_calls / requests, 2),
            "observations": observations[0],
            "invariant_violations": len(seen) + len(violations(stack)),
            "violation_examples": sorted(set(seen))[:10],
        }


def sweeper_reads(histories: list[int]) -> list[dict[str, Any]]:
    """Items read and calls made by one sweep with growing history and 18 active blocks."""
    rows = []
    with emulated_aws():
        stack = deploy_stack(setenv, nacls=1, foreign_rules=ALLOW_ALL, RuleLimit=RULE_LIMIT)
        run = wiring.lifecycle()
        for i in range(RULE_LIMIT):
            block = run.registration.register(BlockRequest(ip=f"192.0.2.{i + 1}", duration=3600), source="bench").block
            stack.start(block.id)
        wait_until(lambda: len(stack.managed(stack.nacl_ids[0])) == RULE_LIMIT, 60, "active blocks")
        written = 0
        for history in histories:
            write_history(stack, written, history)
            written = history
            items = ItemsRead()
            session = boto3._get_default_session()._session
            session.register("after-call.dynamodb", items)
            wiring.reset()
            with counting() as calls:
                summary = sweeper.lambda_handler(event("schedule_sweep.json"), FakeLambdaContext())
            session.unregister("after-call.dynamodb", items)
            rows.append(
                {
                    "historical": history,
                    "active": RULE_LIMIT,
                    "items_read": items.items,
                    "calls": sum(calls.counts().values()),
                    "repairs": summary["repairs"],
                }
            )
    return rows


def import_times() -> dict[str, Any]:
    """Cumulative import time of each handler module, as a ratio to a bare `import boto3`."""

    def cumulative(module: str) -> int:
        best = None
        for _ in range(3):
            result = subprocess.run(  # noqa: S603
                [sys.executable, "-X", "importtime", "-c", f"import {module}"],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONPATH": str(ROOT / "functions")},
            )
            for line in result.stderr.splitlines():
                match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
                if match and match.group(2) == module:
                    value = int(match.group(1))
                    best = value if best is None else min(best, value)
        assert best is not None, module
        return best

    boto3_us = cumulative("boto3")
    modules = ["autoblock.handlers.api", "autoblock.handlers.tasks", "autoblock.handlers.sweeper"]
    return {
        "boto3_ms": round(boto3_us / 1000, 1),
        "modules": {
            m: {"ms": round((us := cumulative(m)) / 1000, 1), "ratio_to_boto3": round(us / boto3_us, 2)}
            for m in modules
        },
    }


# -- the seed's design ----------------------------------------------------------------------------


def baseline(requests: int, addresses: int, lag_blocks: int) -> dict[str, Any]:
    with emulated_aws():
        stack = deploy_stack(setenv, nacls=1, foreign_rules=ALLOW_ALL, RuleLimit=RULE_LIMIT)
        nacl = stack.nacl_ids[0]
        create_table()
        with counting() as calls:  # clients made inside, so the hook sees their calls
            assert Seed().blacklist("203.0.113.7", nacl, int(time.time()) + 1, RULE_LIMIT) == "blocked"
        per_block = calls.counts()
        time.sleep(1.1)
        with counting() as calls:
            Seed().handle_expiry()
        per_expiry = calls.counts()
        seed = Seed()

        # Expiry lag: the seed's sweep runs once a minute; a block waits for the next tick. The
        # tick's phase is random against the expiries; the sweep's own duration is measured.
        started = time.monotonic()
        seed.handle_expiry()
        sweep_s = time.monotonic() - started
        rng = random.Random(2017)
        lags = [60 - rng.uniform(0, 60) + sweep_s for _ in range(lag_blocks)]

        # The burst: the same shape as autoblock's, against the same RuleLimit.
        stack.ec2 = boto3.client("ec2")
        outcomes: Counter[str] = Counter()
        lock = threading.Lock()

        def send(i: int) -> None:
            ip = f"203.0.{113 - (i % addresses) // 250}.{(i % addresses) % 250 + 1}"
            result = Seed().blacklist(ip, nacl, int(time.time()) + 600, RULE_LIMIT)
            with lock:
                outcomes[result] += 1

        with counting() as calls, ThreadPoolExecutor(max_workers=32) as pool:
            list(pool.map(send, range(requests)))
        entries = [
            e
            for e in stack.entries(nacl)
            if e["RuleAction"] == "deny" and 10 <= e["RuleNumber"] < 10 + 2 * RULE_LIMIT + 50
        ]
        cidrs = Counter(str(e.get("CidrBlock")) for e in entries if e["Protocol"] == "-1")
        rows = seed._rows()
        row_rules = Counter(int(r["rule"]) for r in rows)
        return {
            "calls_per_block": per_block,
            "calls_per_expiry": per_expiry,
            "expiry_lag_simulated": {
                "p50_s": round(percentile(lags, 0.5), 1),
                "p99_s": round(percentile(lags, 0.99), 1),
                "max_s": round(max(lags), 1),
                "sweep_duration_s": round(sweep_s, 3),
            },
            "sweep_items_read": "every row of the table on every sweep (it keeps no history: ended blocks are deleted)",
            "burst": {
                "requests": requests,
                "outcomes": dict(sorted(outcomes.items())),
                "aws_calls_per_request": round(sum(calls.counts().values()) / requests, 2),
                "entries": len(entries),
                "rows": len(rows),
                "violations": {
                    "entries_over_rule_limit": max(0, len(entries) - RULE_LIMIT),
                    "addresses_with_two_entries": sum(n > 1 for n in cidrs.values()),
                    "rows_sharing_a_rule_number": sum(n - 1 for n in row_rules.values() if n > 1),
                    "entries_without_a_row (never removed)": max(0, len(entries) - len(rows)),
                    "requests_failed_by_a_racing_rule_number": outcomes.get("NetworkAclEntryAlreadyExists", 0),
                },
            },
        }


# -- report ---------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def run(size: str, step: Callable[[str], None] = print) -> dict[str, Any]:
    sizes = SIZES[size]
    results: dict[str, Any] = {"command": f"make bench{' (smoke)' if size == 'smoke' else ''}", "machine": machine()}
    step("lifecycle")
    results["lifecycle"] = lifecycle_counts()
    step("expiry lag")
    results["expiry_lag"] = expiry_lag(sizes["lag_blocks"])
    step("burst")
    results["burst"] = burst(sizes["burst_requests"], sizes["burst_addresses"])
    step("sweeper")
    results["sweeper"] = sweeper_reads(sizes["histories"])
    step("import times")
    results["import_times"] = import_times()
    step("baseline")
    results["baseline"] = baseline(sizes["burst_requests"], sizes["burst_addresses"], sizes["lag_blocks"])
    return results


def markdown(r: dict[str, Any]) -> str:
    life, lag, burst_r, base = r["lifecycle"], r["expiry_lag"], r["burst"], r["baseline"]
    rows = "\n".join(
        f"| {s['historical']:,} | {s['active']} | {s['items_read']} | {s['calls']} |" for s in r["sweeper"]
    )
    imports = "\n".join(
        f"| `{m}` | {v['ms']} | {v['ratio_to_boto3']} |" for m, v in r["import_times"]["modules"].items()
    )
    violations = "\n".join(f"| {k} | {v} |" for k, v in base["burst"]["violations"].items())
    return f"""# Benchmarks

Command: `{r["command"]}` on {r["machine"]["platform"]}, {r["machine"]["cpus"]} CPUs, Python
{r["machine"]["python"]}, {r["machine"]["date"]}. Everything runs on emulated AWS (moto, with the real
state machine definition and the real handlers), so counts are exact and times are this machine's:
compare them only within this report. The seed's design is `bench/baseline.py`, run on the same
workloads in the same run.

## One block, from request to release (1 NACL)

| | autoblock | seed design |
|---|---|---|
| AWS calls, request → deny entry | {life["critical_path_total"]} | {sum(base["calls_per_block"].values())} |
| AWS calls, whole lifecycle | {life["lifecycle_total"]} | {sum(base["calls_per_block"].values()) + sum(base["calls_per_expiry"].values())} (its sweep's calls, shared by all expiring rows) |
| Step Functions states entered | {life["state_transitions"]} | none |
| Lambda invocations | 1 (the API) + {sum(life["lambda_invocations"].values())} workflow tasks | 1 + one sweep a minute |

autoblock, request → entry: {json.dumps(life["critical_path_calls"])}

autoblock, whole lifecycle: {json.dumps(life["lifecycle_calls"])}

Lambda invocations: {json.dumps(life["lambda_invocations"])}; path: {" → ".join(life["path"])}

Seed, per block: {json.dumps(base["calls_per_block"])}; per sweep: {json.dumps(base["calls_per_expiry"])}

## Expiry lag (time from `expires_at` to the entry being gone)

| | blocks | p50 | p99 | max | removed early |
|---|---|---|---|---|---|
| autoblock (measured) | {lag["blocks"]} | {lag["p50_s"]} s | {lag["p99_s"]} s | {lag["max_s"]} s | {lag["early"]} |
| seed design (one-minute schedule, random phase; sweep time measured) | {lag["blocks"]} | {base["expiry_lag_simulated"]["p50_s"]} s | {base["expiry_lag_simulated"]["p99_s"]} s | {base["expiry_lag_simulated"]["max_s"]} s | 0 |

## A burst: {burst_r["requests"]:,} requests for {burst_r["addresses"]} addresses at once, RuleLimit {RULE_LIMIT}

The requests come from 32 concurrent clients as fast as the emulator takes them. moto serializes
every DynamoDB and EC2 request (as the tests must, see autoblock_local/emulator.py) and runs all
of it in one Python process, so the wall times below are the emulator's throughput, not AWS's;
the outcomes, counts and invariant checks are the point.

autoblock: answers {json.dumps(burst_r["statuses"])} in {burst_r["answered_s"]} s (all blocks settled
after {burst_r["settled_s"]} s); blocks {json.dumps(burst_r["blocks"])}; {burst_r["entries"]} entries in the
NACL; {burst_r["aws_calls_per_request"]} AWS calls per request; invariants checked at
{burst_r["observations"]} observation points: **{burst_r["invariant_violations"]} violations**.

Seed design, the same burst: outcomes {json.dumps(base["burst"]["outcomes"])};
{base["burst"]["entries"]} entries, {base["burst"]["rows"]} rows; {base["burst"]["aws_calls_per_request"]} AWS calls per request.

| seed design: violation | count |
|---|---|
{violations}

## The sweeper: what one sweep reads, as history grows ({RULE_LIMIT} active blocks)

| historical blocks | active | DynamoDB items read | AWS calls |
|---|---|---|---|
{rows}

The seed's sweep scans the whole table: {base["sweep_items_read"]}.

## Cold start: import time of each handler module

`import boto3` alone: {r["import_times"]["boto3_ms"]} ms (best of 3, this machine).

| module | ms | ratio to `import boto3` |
|---|---|---|
{imports}

## Idle cost a month

{cost.section()}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (the test suite runs this)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for benchmarks.json and .md")
    parser.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    args = parser.parse_args(argv)
    if args.render:
        results = json.loads((args.out / "benchmarks.json").read_text())
        (args.out / "benchmarks.md").write_text(markdown(results))
        return 0
    results = run("smoke" if args.smoke else "full", step=lambda s: print(f"bench: {s}", flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "benchmarks.md").write_text(markdown(results))
    print(f"wrote {args.out / 'benchmarks.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
