"""make bench: autoblock measured on emulated AWS (moto, the real ASL, the real handlers), before and
after the lean core (commit ec32605 is the "before"), and side by side with the seed's design
(bench/baseline.py), on the same workloads in the same run.

Writes docs/benchmarks.json and docs/benchmarks.md. Counts and ratios are the figures; wall times
are this machine's and only compare runs made together. Every AWS call is counted where botocore
makes it (``bench.probe.Recorder``), whatever session made the client. ``--smoke`` runs tiny sizes
and skips the "before" checkout and valgrind (the test suite runs it, so the benchmark does not rot).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
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

from autoblock.dal.secrets import TOKEN_CACHE_SECONDS  # noqa: E402
from autoblock.handlers import sweeper, wiring  # noqa: E402
from autoblock.logic.reservation import SLOT_VIEW_SECONDS  # noqa: E402
from autoblock.models import BlockRequest  # noqa: E402
from autoblock_local import emulator  # noqa: E402
from autoblock_local.emulator import (  # noqa: E402
    TOKEN,
    FakeLambdaContext,
    deploy_stack,
    emulated_aws,
    wait_until,
)
from autoblock_local.invariants import violations  # noqa: E402
from autoblock_local.invoke import call, event, isolated_api  # noqa: E402
from bench import cost, waf  # noqa: E402
from bench.baseline import Seed, create_table  # noqa: E402
from bench.history import write_history  # noqa: E402
from bench.lag import lags_until_gone, percentile  # noqa: E402
from bench.lag import summary as lag_summary  # noqa: E402
from bench.probe import ENTRY, INVOKE, Recorder, ours, until_entry  # noqa: E402

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "lag_blocks": 50,
        "burst_requests": 1000,
        "burst_addresses": 300,
        "histories": [10, 1000, 100_000],
        "latency_requests": 50,
        "before": True,
        "valgrind": True,
        "waf_burst": 5000,
        "sweep_blocks": 20_000,
        "sweep_nacl_blocks": 18,
        "waf_lag_blocks": 200,
    },
    "smoke": {
        "lag_blocks": 4,
        "burst_requests": 24,
        "burst_addresses": 8,
        "histories": [10, 100],
        "latency_requests": 3,
        "before": False,
        "valgrind": False,
        "waf_burst": 30,
        "sweep_blocks": 300,
        "sweep_nacl_blocks": 4,
        "waf_lag_blocks": 6,
    },
}
BEFORE = "ec32605"  # the last commit before the lean core
RULE_LIMIT = 18
# A NACL as most VPCs have it: allow all, in and out. With RuleLimit 18 that is 19 of the 20 rules
# AWS allows per direction and address family (the emulator enforces that quota as AWS does).
ALLOW_ALL = [r for r in emulator.FOREIGN_RULES if r["RuleAction"] == "allow"]


class ItemsRead:
    """The DynamoDB items our code reads (an ``after-call.dynamodb`` hook)."""

    def __init__(self) -> None:
        self.items = 0

    def __call__(self, **kwargs: Any) -> None:
        parsed = kwargs["parsed"]
        self.items += len(parsed.get("Items", ())) + ("Item" in parsed)
        self.items += sum(len(v) for v in parsed.get("Responses", {}).values())


@contextmanager
def counting() -> Iterator[Recorder]:
    """Every AWS call made meanwhile, in this process, through any session."""
    with Recorder().recording() as recorder:
        yield recorder


def tally(names: list[str]) -> dict[str, int]:
    return dict(sorted(Counter(names).items()))


def setenv(key: str, value: str) -> None:
    os.environ[key] = value


# -- autoblock ------------------------------------------------------------------------------------


def probe(tree: Path, requests: int) -> dict[str, Any]:
    """bench/probe.py on a checkout, in its own process: request → entry (cold, then warm, with
    latency) and one block's whole lifecycle."""
    result = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(ROOT / "bench" / "probe.py"), "--tree", str(tree), "--requests", str(requests)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the probe failed on {tree}:\n{result.stderr[-3000:]}")
    measured: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def request_path(measured: dict[str, Any]) -> dict[str, Any]:
    """Request → deny entry and the whole lifecycle, today, from the probe's answer."""
    life = measured["lifecycle"]
    return {
        "warm": {
            "calls": measured["warm"]["calls"],
            "total": len(measured["warm"]["calls"]),
            "invocations": measured["warm"]["invocations"],
            "calls_per_request": measured["warm"]["calls_per_request"],
        },
        "cold": {
            "calls": measured["cold"]["calls"],
            "total": len(measured["cold"]["calls"]),
            "invocations": measured["cold"]["invocations"],
            "entry_ms": measured["cold"]["entry_ms"],
        },
        "latency": {
            "requests": measured["requests"],
            "entry_ms": measured["entry_ms"],
            "answer_ms": measured["answer_ms"],
        },
        "lifecycle": {
            "calls": life["calls"],
            "counts": tally(life["calls"]),
            "total": len(life["calls"]),
            "invocations_before_entry": life["invocations_before_entry"],
            "invocations": life["invocations"],
            "state_transitions": life["state_transitions"],
            "path": life["path"],
        },
    }


def finding_path() -> dict[str, Any]:
    """events/guardduty_ssh_bruteforce.json delivered as EventBridge delivers it (an execution started
    with the event as its input, as autoblock_local/bus.py does): calls until its deny entry, on a
    cold task container, then warm (the same finding naming another attacker, a minute later at most)."""
    fixture = (emulator.EVENTS / "guardduty_ssh_bruteforce.json").read_text()
    attacker = "203.0.113.7"
    assert attacker in fixture
    rounds: list[dict[str, Any]] = []
    with emulated_aws():
        stack = deploy_stack(setenv, nacls=1, foreign_rules=ALLOW_ALL, RuleLimit=RULE_LIMIT)
        with Recorder().recording() as recorder:
            for i, address in enumerate((attacker, "203.0.113.8")):
                finding = json.loads(fixture.replace(attacker, address))
                finding["id"] = f"{finding['id'][:-2]}{i:02d}"
                started = time.monotonic()
                with recorder.quiet():  # EventBridge's StartExecution, not ours
                    stack.sfn.start_execution(
                        stateMachineArn=stack.state_machine_arn, name=finding["id"], input=json.dumps(finding)
                    )
                entry = recorder.wait_for(ENTRY, started)
                calls = until_entry(recorder.since(started, entry.start))
                rounds.append(
                    {
                        "calls": ours(calls),
                        "total": len(ours(calls)),
                        "invocations": sum(c.name == INVOKE for c in calls),
                        "entry_ms": round(((entry.end or started) - started) * 1000),
                    }
                )
                with recorder.quiet():  # its block active (Apply's last write done) before the next finding
                    wait_until(
                        lambda: [b["state"] for b in stack.items("BLOCK#")] == ["active"] * (i + 1),  # noqa: B023
                        30,
                        "the finding's block active",
                    )
    return {"cold": rounds[0], "warm": rounds[1], "peer_calls": 5}


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
            lags += lags_until_gone(
                expiries,
                lambda: {(cidr, egress) for _, egress, cidr in stack.managed(stack.nacl_ids[0])},
                60,
            )
    return lag_summary(blocks, lags)


def burst(requests: int, addresses: int) -> dict[str, Any]:
    """`requests` API requests for `addresses` addresses at once, against RuleLimit 18."""
    with emulated_aws():
        stack = deploy_stack(setenv, nacls=1, foreign_rules=ALLOW_ALL, RuleLimit=RULE_LIMIT, WhenFull="reject")
        wiring.reset()
        recorder = Recorder()
        local = threading.local()
        stop, seen, observations = threading.Event(), list[str](), [0]

        def observe() -> None:
            with recorder.quiet():
                while not stop.is_set():
                    seen.extend(violations(stack))
                    observations[0] += 1

        def send(i: int) -> int:
            if not hasattr(local, "handler"):
                local.handler = isolated_api().lambda_handler
            body = {"ip": f"203.0.{113 - (i % addresses) // 250}.{(i % addresses) % 250 + 1}", "duration": 600}
            return call("api_create_block.json", TOKEN, body=body, handler=local.handler)[0]

        observer = threading.Thread(target=observe)
        with recorder.recording():
            observer.start()
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=32) as pool:
                statuses = Counter(pool.map(send, range(requests)))
            answered = time.monotonic() - started
            with recorder.quiet():
                wait_until(
                    lambda: all(b["state"] in ("active", "rejected", "failed") for b in stack.items("BLOCK#")),
                    300,
                    "burst blocks pending",
                )
            settled = time.monotonic() - started
        stop.set()
        observer.join()
        blocks = Counter(str(b["state"]) for b in stack.items("BLOCK#"))
        view = wiring.lifecycle().view  # the isolated API copies share wiring, so this one view
        names = ours(recorder.calls)
        return {
            "requests": requests,
            "addresses": addresses,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "blocks": dict(sorted(blocks.items())),
            "entries": len(stack.managed(stack.nacl_ids[0])),
            "answered_s": round(answered, 1),
            "settled_s": round(settled, 1),
            "aws_calls_per_request": round(len(names) / requests, 2),
            "calls": tally(names),
            "lambda_invocations": requests + sum(c.name == INVOKE for c in recorder.calls),
            "slot_view": {
                "hits": view.hits,
                "misses": view.misses,
                "hit_rate": round(view.hits / max(1, view.hits + view.misses), 3),
            },
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
                    "calls": len(ours(calls.calls)),
                    "repairs": summary["repairs"],
                }
            )
    return rows


HANDLERS = {
    "autoblock.handlers.api": "ApiFunction",
    "autoblock.handlers.tasks": "TaskFunction",
    "autoblock.handlers.sweeper": "SweeperFunction",
}


def lambda_env(tree: Path, function: str) -> dict[str, str]:
    """What a cold start imports under: the Lambda runtime's variables (Powertools reads some)."""
    return {
        **os.environ,
        "PYTHONPATH": str(tree / "functions"),
        "PYTHONHASHSEED": "0",
        "LAMBDA_TASK_ROOT": "/var/task",
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "POWERTOOLS_SERVICE_NAME": "autoblock",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def instructions(valgrind: str, code: str, env: dict[str, str]) -> int:
    """Instructions executed by ``python -c code`` (valgrind's cachegrind, no cache simulation):
    a count the machine's load cannot move."""
    subprocess.run([sys.executable, "-c", code], env=env, check=True)  # noqa: S603 - .pyc files written first
    result = subprocess.run(  # noqa: S603
        [
            valgrind,
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    match = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    assert match, result.stderr[-2000:]
    return int(match.group(1).replace(",", ""))


def import_microseconds(module: str, env: dict[str, str], runs: int) -> int:
    """Best of ``runs`` cumulative ``-X importtime`` of ``module``, in microseconds."""
    best = None
    for _ in range(runs):
        result = subprocess.run(  # noqa: S603
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        for line in result.stderr.splitlines():
            match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
            if match and match.group(2) == module:
                value = int(match.group(1))
                best = value if best is None else min(best, value)
    assert best is not None, module
    return best


def import_costs(tree: Path, valgrind: bool) -> dict[str, Any]:
    """Each handler module's import as a ratio to ``import boto3``, with the Lambda environment set:
    instructions counted by valgrind (a bare ``python -c pass`` subtracted) where asked and installed,
    else the best of 5 ``-X importtime``."""
    found = shutil.which("valgrind")
    if valgrind and found:
        base = instructions(found, "pass", lambda_env(tree, "bench"))
        boto3_cost = instructions(found, "import boto3", lambda_env(tree, "bench")) - base
        modules = {m: instructions(found, f"import {m}", lambda_env(tree, fn)) - base for m, fn in HANDLERS.items()}
        return {
            "method": "valgrind --tool=cachegrind --cache-sim=no: instructions, `python -c pass` subtracted",
            "unit": "million instructions",
            "boto3": round(boto3_cost / 1e6),
            "modules": {
                m: {"cost": round(v / 1e6), "ratio_to_boto3": round(v / boto3_cost, 2)} for m, v in modules.items()
            },
        }
    boto3_us = import_microseconds("boto3", lambda_env(tree, "bench"), 5)
    times = {m: import_microseconds(m, lambda_env(tree, fn), 5) for m, fn in HANDLERS.items()}
    return {
        "method": "python -X importtime, cumulative, best of 5 (valgrind skipped or not installed)",
        "unit": "ms",
        "boto3": round(boto3_us / 1000, 1),
        "modules": {
            m: {"cost": round(v / 1000, 1), "ratio_to_boto3": round(v / boto3_us, 2)} for m, v in times.items()
        },
    }


# -- before the lean core -------------------------------------------------------------------------


@contextmanager
def checkout(commit: str) -> Iterator[Path]:
    """The tree of ``commit`` in a temporary folder (git archive: no worktree is registered)."""
    with tempfile.TemporaryDirectory(prefix="autoblock-before-") as folder:
        archive = subprocess.run(  # noqa: S603
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit],  # noqa: S607
            capture_output=True,
            check=True,
        )
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(folder, filter="data")
        yield Path(folder)


def before(requests: int, valgrind: bool) -> dict[str, Any]:
    """The design before the lean core, measured in this run by the same probe and import count."""
    try:
        with checkout(BEFORE) as tree:
            measured = probe(tree, requests)
            imports = import_costs(tree, valgrind)
    except (subprocess.CalledProcessError, RuntimeError, OSError) as exc:
        return {"commit": BEFORE, "measured": False, "why": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return {"commit": BEFORE, "measured": True, **request_path(measured), "import_costs": imports}


# -- the seed's design ----------------------------------------------------------------------------


def baseline(requests: int, addresses: int, lag_blocks: int) -> dict[str, Any]:
    with emulated_aws():
        stack = deploy_stack(setenv, nacls=1, foreign_rules=ALLOW_ALL, RuleLimit=RULE_LIMIT)
        nacl = stack.nacl_ids[0]
        create_table()
        with counting() as calls:  # clients made inside, so the hook sees their calls
            assert Seed().blacklist("203.0.113.7", nacl, int(time.time()) + 1, RULE_LIMIT) == "blocked"
        per_block = tally(ours(calls.calls))
        time.sleep(1.1)
        with counting() as calls:
            Seed().handle_expiry()
        per_expiry = tally(ours(calls.calls))
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
                "aws_calls_per_request": round(len(ours(calls.calls)) / requests, 2),
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


# What the issue "lean core" measured on the old design, counting every request that reached the
# emulated endpoint (the state machine's Lambda.Invoke and the API's GetSecretValue included), and
# the peer it quotes.
ISSUE: dict[str, Any] = {
    "request_to_entry": 13,
    "lifecycle": 23,
    "invocations_before_entry": 4,
    "imports": {"api": 2.85, "tasks": 2.19, "sweeper": 2.06},
    "idle_usd_month": 4.26,
    "peer_finding_to_entry": 5,
}
PEER = "the aws-samples GuardDuty-to-NACL Lambda, as quoted in the issue"


def reported_before() -> dict[str, Any] | None:
    """ec32605's own docs/benchmarks.json (its bench hooked the default session only)."""
    try:
        shown = subprocess.run(  # noqa: S603
            ["git", "-C", str(ROOT), "show", f"{BEFORE}:docs/benchmarks.json"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        )
    except (subprocess.CalledProcessError, OSError):
        return None
    old: dict[str, Any] = json.loads(shown.stdout)
    return {
        "request_to_entry": old["lifecycle"]["critical_path_total"],
        "lifecycle": old["lifecycle"]["lifecycle_total"],
        "invocations_before_entry": 1  # the API, then every task but Expire
        + sum(n for f, n in old["lifecycle"]["lambda_invocations"].items() if f != "ExpireFunction"),
        "state_transitions": old["lifecycle"]["state_transitions"],
        "imports": {m.rsplit(".", 1)[1]: v["ratio_to_boto3"] for m, v in old["import_times"]["modules"].items()},
    }


def run(size: str, step: Callable[[str], None] = print) -> dict[str, Any]:
    sizes = SIZES[size]
    results: dict[str, Any] = {"command": f"make bench{' (smoke)' if size == 'smoke' else ''}", "machine": machine()}
    step("request → entry, lifecycle (probe)")
    today = request_path(probe(ROOT, sizes["latency_requests"]))
    results["lifecycle"] = today.pop("lifecycle")
    results["request_to_entry"] = today
    step("finding → entry")
    results["finding_to_entry"] = finding_path()
    step("expiry lag")
    results["expiry_lag"] = expiry_lag(sizes["lag_blocks"])
    step("burst")
    results["burst"] = burst(sizes["burst_requests"], sizes["burst_addresses"])
    results["request_to_entry"]["amortised"] = {
        "GetSecretValue": {
            "cache_s": TOKEN_CACHE_SECONDS,
            "cold_calls": today["cold"]["calls"].count("SecretsManager.GetSecretValue"),
        },
        "slot view Query": {
            "cache_s": SLOT_VIEW_SECONDS,
            "cold_calls": today["cold"]["calls"].count("DynamoDB.Query"),
            "burst": results["burst"]["slot_view"],
        },
    }
    step("sweeper")
    results["sweeper"] = sweeper_reads(sizes["histories"])
    results["waf"] = waf.run(sizes, step)
    step("imports")
    results["imports"] = import_costs(ROOT, sizes["valgrind"])
    step("baseline")
    results["baseline"] = baseline(sizes["burst_requests"], sizes["burst_addresses"], sizes["lag_blocks"])
    if sizes["before"]:
        step(f"before ({BEFORE})")
        results["before"] = before(sizes["latency_requests"], sizes["valgrind"])
    else:
        results["before"] = {"commit": BEFORE, "measured": False, "why": "not run in --smoke"}
    results["before"]["reported"] = reported_before()
    results["before_after"] = before_after(results)
    return results


def _calls(path: dict[str, Any]) -> str:
    """``n`` our calls, with the state machine's Lambda.Invoke beside them."""
    invokes = path["invocations"] - 1
    return f"{path['total']} (+{invokes} Lambda.Invoke)"


def before_after(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each figure of the issue: the old design's value as reported, as measured in this run, and today's."""
    now, life, finding, imports = r["request_to_entry"], r["lifecycle"], r["finding_to_entry"], r["imports"]
    old = r["before"] if r["before"]["measured"] else None
    reported = r["before"].get("reported") or {}
    old_imports = old["import_costs"]["modules"] if old else {}

    def ratio(module: str) -> str:
        return f"{old_imports[module]['ratio_to_boto3']}x" if old else "not measured"

    idle = cost.estimate()
    dashboard = cost.estimate(cost.SCENARIOS["alarms and dashboard on"])
    rows = [
        {
            "figure": "AWS calls, request → deny entry (warm API)",
            "reported": f"{ISSUE['request_to_entry']} at the endpoint; {reported.get('request_to_entry', '?')} by its bench",
            "measured_before": _calls(old["warm"]) if old else "not measured",
            "today": _calls(now["warm"]),
            "target": "≤ 4",
            "met": now["warm"]["total"] <= 4,
        },
        {
            "figure": "AWS calls, request → deny entry (cold container)",
            "reported": "—",
            "measured_before": _calls(old["cold"]) if old else "not measured",
            "today": _calls(now["cold"]),
            "target": "—",
            "met": None,
        },
        {
            "figure": "AWS calls, GuardDuty finding (one attacker) → deny entry",
            "reported": f"peer: {ISSUE['peer_finding_to_entry']} ({PEER})",
            "measured_before": "not measured",
            "today": f"{finding['warm']['total']} warm, {finding['cold']['total']} cold "
            f"(+{finding['warm']['invocations']} Lambda.Invoke)",
            "target": "≤ 4",
            "met": finding["warm"]["total"] <= 4,
        },
        {
            "figure": "AWS calls, whole lifecycle (warm API)",
            "reported": f"{ISSUE['lifecycle']} at the endpoint; {reported.get('lifecycle', '?')} by its bench",
            "measured_before": f"{old['lifecycle']['total']} (+{old['lifecycle']['invocations'] - 1} Lambda.Invoke)"
            if old
            else "not measured",
            "today": f"{life['total']} (+{life['invocations'] - 1} Lambda.Invoke)",
            "target": "≤ 10",
            "met": life["total"] <= 10,
        },
        {
            "figure": "Lambda invocations before the entry",
            "reported": f"{ISSUE['invocations_before_entry']} (API, Validate, Reserve, Apply)",
            "measured_before": str(old["lifecycle"]["invocations_before_entry"]) if old else "not measured",
            "today": str(life["invocations_before_entry"]),
            "target": "≤ 2",
            "met": life["invocations_before_entry"] <= 2,
        },
        {
            "figure": "State transitions (StateEntered), one block",
            "reported": str(reported.get("state_transitions", "?")),
            "measured_before": str(old["lifecycle"]["state_transitions"]) if old else "not measured",
            "today": str(life["state_transitions"]),
            "target": "≤ 9",
            "met": life["state_transitions"] <= 9,
        },
        {
            "figure": "Request → entry on the emulator, p50 / p99 (warm)",
            "reported": "not reported",
            "measured_before": f"{old['latency']['entry_ms']['p50']} / {old['latency']['entry_ms']['p99']} ms"
            if old
            else "not measured",
            "today": f"{now['latency']['entry_ms']['p50']} / {now['latency']['entry_ms']['p99']} ms",
            "target": "—",
            "met": None,
        },
        *(
            {
                "figure": f"Import of `{module}`, x `import boto3`",
                "reported": f"{ISSUE['imports'][module.rsplit('.', 1)[1]]}x",
                "measured_before": ratio(module),
                "today": f"{imports['modules'][module]['ratio_to_boto3']}x",
                "target": "≤ 1.5x",
                "met": imports["modules"][module]["ratio_to_boto3"] <= 1.5,
            }
            for module in HANDLERS
        ),
        {
            "figure": "Idle cost a month",
            "reported": f"about ${ISSUE['idle_usd_month']:.2f}",
            "measured_before": "—",
            "today": f"${idle.total:.2f} (defaults); ${dashboard.total:.2f} with the dashboard",
            "target": "—",
            "met": None,
        },
    ]
    return rows


def _yes(met: bool | None) -> str:
    return "—" if met is None else ("yes" if met else "**no**")


def markdown(r: dict[str, Any]) -> str:
    life, lag, burst_r, base = r["lifecycle"], r["expiry_lag"], r["burst"], r["baseline"]
    now, finding, imports, old = r["request_to_entry"], r["finding_to_entry"], r["imports"], r["before"]
    table = "\n".join(
        f"| {row['figure']} | {row['reported']} | {row['measured_before']} | {row['today']} | {row['target']} "
        f"| {_yes(row['met'])} |"
        for row in r["before_after"]
    )
    rows = "\n".join(
        f"| {s['historical']:,} | {s['active']} | {s['items_read']} | {s['calls']} |" for s in r["sweeper"]
    )
    unit = imports["unit"]
    import_rows = "\n".join(
        f"| `{m}` | {v['cost']:,} | {v['ratio_to_boto3']} | "
        + (f"{old['import_costs']['modules'][m]['ratio_to_boto3']} |" if old["measured"] else "not measured |")
        for m, v in imports["modules"].items()
    )
    violations = "\n".join(f"| {k} | {v} |" for k, v in base["burst"]["violations"].items())
    amortised = now["amortised"]
    view = amortised["slot view Query"]["burst"]
    if old["measured"]:
        before_note = (
            f"commit `{old['commit']}` extracted with `git archive` to a temporary folder and run with its "
            "own emulator and handlers by the same `bench/probe.py` and the same import count. Counted that "
            f"way, its warm request → entry is {old['warm']['total']} calls + {old['warm']['invocations'] - 1} "
            f"`Lambda.Invoke` = {old['warm']['total'] + old['warm']['invocations'] - 1} requests at the endpoint "
            f"(the issue: {ISSUE['request_to_entry']}), its lifecycle {old['lifecycle']['total']} + "
            f"{old['lifecycle']['invocations'] - 1} = {old['lifecycle']['total'] + old['lifecycle']['invocations'] - 1} "
            f"(the issue: {ISSUE['lifecycle']})"
        )
    else:
        before_note = f"not measured in this run ({old['why']})"
    return f"""# Benchmarks

Command: `{r["command"]}` on {r["machine"]["platform"]}, {r["machine"]["cpus"]} CPUs, Python
{r["machine"]["python"]}, {r["machine"]["date"]}. Everything runs on emulated AWS (moto, with the real
state machine definition and the real handlers), so counts are exact and times are this machine's:
compare them only within this report. Every AWS call is counted where botocore makes it
(`BaseClient._make_api_call`, whatever session made the client: the token's GetSecretValue
included); the state machine's `Lambda.Invoke` is counted as an invocation, beside the calls.

## Before and after the lean core

| figure | before: reported | before: measured in this run | today | target | met |
|---|---|---|---|---|---|
{table}

"Before: reported": the issue "lean core", which counted every request reaching the emulated
endpoint ("at the endpoint"), the peer and the idle cost as the issue quotes them; "by its bench" and
the import ratios are commit `{BEFORE}`'s own `docs/benchmarks.json` (a hook on the default session,
which missed GetSecretValue and every `Lambda.Invoke`; imports by `-X importtime`, best of 3, without
the Lambda environment). "Before: measured in this run": {before_note}.

## Request → deny entry

Warm API (the token and the slot view cached by a first request): {" → ".join(now["warm"]["calls"])}
({now["warm"]["total"]} calls; {now["warm"]["invocations"]} Lambda invocations: the API and Apply).
Over {now["latency"]["requests"]} requests one after the other, calls per request: {json.dumps(now["warm"]["calls_per_request"])}.

Cold container (the first request): {" → ".join(now["cold"]["calls"])} ({now["cold"]["total"]} calls,
entry after {now["cold"]["entry_ms"]} ms).

What a warm container amortises: GetSecretValue ({amortised["GetSecretValue"]["cold_calls"]} per cold start, cached
{amortised["GetSecretValue"]["cache_s"]} s, `TOKEN_CACHE_SECONDS`) and the slot view's Query per (NACL, direction)
({amortised["slot view Query"]["cold_calls"]} per cold start, cached {amortised["slot view Query"]["cache_s"]:.0f} s, `SLOT_VIEW_SECONDS`, and read again
whenever a range looks full). During the burst below the slot view answered {view["hits"]} reads from
memory and went to the table {view["misses"]} times: hit rate **{view["hit_rate"]:.0%}** (once a range is full, every
new block reads it again before it is refused, by design: a stale view must never refuse a block).

Latency on the emulator, from the POST to its CreateNetworkAclEntry returning, {now["latency"]["requests"]} warm requests
one after the other (each block unblocked, unrecorded, once active): p50 {now["latency"]["entry_ms"]["p50"]} ms,
p99 {now["latency"]["entry_ms"]["p99"]} ms; the API answers after p50 {now["latency"]["answer_ms"]["p50"]} ms, p99 {now["latency"]["answer_ms"]["p99"]} ms.

## A GuardDuty finding → its deny entry

`events/guardduty_ssh_bruteforce.json` (one attacker) delivered as EventBridge delivers it: an
execution started with the event as its input (that StartExecution is EventBridge's, not counted).
Validate → FromFinding opens the block and starts its execution; Apply creates the entry.

- warm task container: {" → ".join(finding["warm"]["calls"])} ({finding["warm"]["total"]} calls, {finding["warm"]["invocations"]} Lambda invocations)
- cold task container: {" → ".join(finding["cold"]["calls"])} ({finding["cold"]["total"]} calls)
- the peer, {PEER}: {finding["peer_calls"]} calls for one finding's entry.

## One block, from request to release (1 NACL)

| | autoblock | seed design |
|---|---|---|
| AWS calls, request → deny entry | {now["warm"]["total"]} | {sum(base["calls_per_block"].values())} |
| AWS calls, whole lifecycle | {life["total"]} | {sum(base["calls_per_block"].values()) + sum(base["calls_per_expiry"].values())} (its sweep's calls, shared by all expiring rows) |
| Step Functions states entered | {life["state_transitions"]} | none |
| Lambda invocations | {life["invocations"]} ({life["invocations_before_entry"]} before the entry) | 1 + one sweep a minute |

autoblock, whole lifecycle: {" → ".join(life["calls"])}

Path: {" → ".join(life["path"])}

moto's Wait rounds the time to wait down to whole seconds (`int(delta.total_seconds())`), so the
Wait ends up to a second before `expires_at`, as Step Functions' may; Expire sleeps the rest before
its conditional UpdateItem (the ticket carries `expires_at`), rather than ask once too early.

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
NACL; {burst_r["aws_calls_per_request"]} AWS calls per request ({json.dumps(burst_r["calls"])}), {burst_r["lambda_invocations"]} Lambda
invocations; slot view hit rate {view["hit_rate"]:.0%}. The 32 clients start with no token cached and
each fetches it (as 32 new Lambda environments would); a burst longer than the token's cache
fetches it again. Invariants checked at
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

{waf_section(r["waf"]) if "waf" in r else ""}
## Cold start: what each handler module imports

Method: {imports["method"]}; with the Lambda environment set (`LAMBDA_TASK_ROOT=/var/task`,
`AWS_LAMBDA_FUNCTION_NAME`, `POWERTOOLS_SERVICE_NAME`, the region). `import boto3` alone:
{imports["boto3"]:,} {unit}.

| module | {unit} | ratio to `import boto3` | before ({BEFORE}), same method |
|---|---|---|---|
{import_rows}

## Idle cost a month

{cost.section()}
"""


def waf_section(w: dict[str, Any]) -> str:
    b, sweep, lag = w["burst"], w["sweep"], w["expiry_lag"]
    ours_row, full_row = sweep["rows"]["autoblock"], sweep["rows"]["a full read of every live block"]
    return f"""## WAF IP sets: a burst of {b["requests"]:,} requests for {b["requests"]:,} addresses, `targets` `["waf"]`, {b["sets_per_family"]} sets per family

Each request goes through the API handler, and each new block's Apply task through the task handler
with the ticket its execution carries; moto's Step Functions is stood in for here (thousands of live
executions, each with threads of its own, would measure the emulator; the Wait and the release are
measured with real executions below). The emulator enforces WAF's limits: 10,000 addresses per set,
one UpdateIPSet a second per account and Region.

Answers {json.dumps(b["statuses"])} in {b["answered_s"]} s, all applied after {b["settled_s"]} s; blocks
{json.dumps(b["blocks"])}; sets {json.dumps(b["fill"])}. **UpdateIPSet: {b["update_calls"]} calls
({b["updates_accepted"]} accepted, refused {json.dumps(b["updates_refused"])}), {b["updates_per_block"]} per block;
peak {b["peak_updates_per_second"]} accepted a second.** {b["aws_calls_per_request"]} AWS calls per request
({json.dumps(b["calls"])}); {b.get("apply_retries", 0)} Apply attempts ended in TransientAwsError and were retried
(the ASL's Retry). Invariants (every active block's address is in its set; a set holds nothing
the table does not want) checked at {b["observations"]} observation points: **{b["invariant_violations"]} violations**.

## One sweep with {sweep["active_blocks"]:,} active blocks ({sweep["nacl_blocks"]} in the NACL, {sweep["waf_blocks"]:,} in WAF)

| | AWS calls | DynamoDB reads | items read | read units | a month of sweeps ({sweep["sweeps_per_month"]:,}) |
|---|---|---|---|---|---|
| autoblock | {json.dumps(ours_row["calls"])} | {json.dumps(ours_row["dynamodb_reads"])} | {ours_row["items_read"]:,} | {ours_row["read_units"]} | ${ours_row["usd_per_month"]:.4f} |
| a full read of every live block | {json.dumps(full_row["calls"])} | {json.dumps(full_row["dynamodb_reads"])} | {full_row["items_read"]:,} | {full_row["read_units"]} | ${full_row["usd_per_month"]:.4f} |

At ${sweep["price_per_million_rru"]} per million read request units (on-demand); read units from the items'
sizes (4 KB a unit, half for an eventually consistent read). How: an active block that holds no rule
number lives in the live index's `LIVE#WAF` partition, which the sweeper reads only up to the present
(the overdue, none here); each set is checked by one GetIPSet (no DynamoDB read; WAF bills no API
call) against the digest its last update recorded in the set's summary item, all summaries in one
BatchGetItem. A set's members are read only when it differs. The NACL blocks cost what they did
before: the live index's `LIVE` partition and the rule numbers of each NACL and direction.

## Expiry lag of WAF-held blocks ({lag["blocks"]} blocks of 20-24 s, real executions, in waves of 100)

From `expires_at` to the moment moto applied the UpdateIPSet that took the address out, read from
the emulator's record of every such call (the addresses it gave, and when it was applied): p50
{lag["p50_s"]} s, p99 {lag["p99_s"]} s, max {lag["max_s"]} s; {lag["removed"]} of {lag["blocks"]}
removed; {lag["early"]} early. Updates are spaced about 1.05 s apart (WAF's rate, which all the sets
of an account and Region share), and the writer reads ahead of its turn and leaves out what is due
by then, so an address waits at most about one turn. Step Functions, the handlers, DynamoDB and WAF
all run in one Python interpreter here, which the measurement keeps out of the figure in two ways:
a thread that polled the sets every 50 ms queued for it behind the wave's expiries and saw removals
up to 0.9 s late, so the record is used instead; and a full collection of its one heap (a million
objects: every emulated service's state) stopped every thread for up to 1.1 s, a pause no Lambda
or Step Functions worker on AWS shares with the others, so the heap left before each wave is frozen
(`gc.freeze()`) and collections scan only what the wave creates.
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
