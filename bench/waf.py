"""make bench, WAF part: autoblock's WAF IP sets measured on emulated AWS (moto's WAFv2 with the
emulator's limits: 10,000 addresses per set, one UpdateIPSet a second per account and Region).

* ``burst``: thousands of requests for as many addresses, ``targets ["waf"]``, 2 sets per family.
  Each request goes through the API handler; each new block's Apply task runs through the task
  handler with the ticket its execution would carry. Step Functions itself is stood in for (by
  ``Workflow.start`` handing the ticket to a pool of task invocations): moto runs every execution
  in threads of its own, and thousands of live executions make the emulator, not autoblock, the
  thing measured. The Wait and Expire states are measured by ``expiry_lag``, with real executions.
* ``sweep_cost``: one sweep with 20,000 active blocks across NACL and WAF (written to the table and
  the sets directly, as 20,000 applied blocks leave them): its calls, its DynamoDB reads in read
  request units, and a month of sweeps priced; beside it, a full read of every live block.
* ``expiry_lag``: WAF-held blocks through the real workflow: time from ``expires_at`` to the address
  being gone from its set.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from unittest import mock

import boto3
from boto3.dynamodb.conditions import Key

from autoblock.dal import waf as waf_dal
from autoblock.dal.items import LIVE, LIVE_WAF
from autoblock.dal.workflow import Workflow
from autoblock.errors import TransientAwsError
from autoblock.handlers import sweeper, tasks, wiring
from autoblock.models import WAF_SET_LIMIT, BlockRequest, Ticket
from autoblock_local import emulator
from autoblock_local.emulator import FakeLambdaContext, Stack, deploy_stack, emulated_aws, wait_until
from autoblock_local.invoke import call, event, isolated_api
from bench import cost
from bench.lag import summary as lag_summary
from bench.probe import Recorder, ours

TOKEN = emulator.TOKEN
SWEEPS_PER_MONTH = cost.HOURS_PER_MONTH * 60
RETRIES: list[str] = []  # Apply attempts of the burst that ended in TransientAwsError (then retried)
ALLOW_ALL = [r for r in emulator.FOREIGN_RULES if r["RuleAction"] == "allow"]  # as bench/run.py's NACL


def setenv(key: str, value: str) -> None:
    os.environ[key] = value


def address(i: int) -> str:
    """The i-th of the burst's distinct public addresses (203.0.113.0 downwards, 250 per /24)."""
    return f"203.0.{113 - i // 250}.{i % 250 + 1}"


@contextmanager
def task_pool(workers: int) -> Iterator[list[Future[Any]]]:
    """Workflow.start hands each new block's ticket to a pool running its Apply task (the state
    machine's next state for a block that holds what it needs)."""
    started: list[Future[Any]] = []
    pool = ThreadPoolExecutor(max_workers=workers)

    def apply(task: dict[str, Any]) -> Any:
        """The Apply state: TransientAwsError retried as the ASL's Retry does (4 attempts, backoff 2)."""
        for attempt in range(4):
            try:
                return tasks.lambda_handler(task, FakeLambdaContext(function_name="TaskFunction"))
            except TransientAwsError:
                RETRIES.append(task["ticket"]["block_id"])
                time.sleep(min(10, 2**attempt) * random.random())
        return tasks.lambda_handler(task, FakeLambdaContext(function_name="TaskFunction"))

    def start(self: Workflow, ticket: Ticket) -> None:
        started.append(pool.submit(apply, {"task": "apply", "ticket": json.loads(ticket.model_dump_json())}))

    try:
        with mock.patch.object(Workflow, "start", start):
            yield started
    finally:
        pool.shutdown(wait=True)


def _query(stack: Stack, **kwargs: Any) -> list[dict[str, Any]]:
    table = stack.ddb.Table(stack.table_name)
    items: list[dict[str, Any]] = []
    while True:
        page = table.query(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def waf_violations(stack: Stack) -> list[str]:
    """What must hold at every moment: every active block's address is in its set (a block is active
    only once an update holding it succeeded), and a set holds nothing the table does not want there.
    Read in that order (active blocks, then the sets, then the members), so a block that becomes
    active or an address that joins between the reads is never taken for a violation. Queries of the
    live index's WAF partition and of each set's members: a scan of the whole table at every
    observation would hold the emulator's DynamoDB for seconds and measure the observer."""
    blocks = _query(stack, IndexName="live", KeyConditionExpression=Key("gsi1pk").eq(LIVE_WAF))
    active = {(str(b["waf_set"]), str(b["cidr"])) for b in blocks if b["state"] == "active" and b.get("waf_set")}
    held = {s.name: set(stack.waf_addresses(s)) for s in stack.waf_sets}
    wanted = {
        (s.name, str(i["sk"]))
        for s in stack.waf_sets
        for i in _query(stack, KeyConditionExpression=Key("pk").eq(f"WAFSET#{s.name}"))
        if i["sk"] != waf_dal.SUMMARY
    }
    found = [f"active {cidr} missing from {name}" for name, cidr in sorted(active) if cidr not in held[name]]
    found += [
        f"{cidr} in {name}, wanted by no block"
        for name, cidr in sorted((n, c) for n, addresses in held.items() for c in addresses)
        if (name, cidr) not in wanted
    ]
    return found


def peak_per_second(times: list[float]) -> int:
    """The most calls in any one-second window."""
    ordered, best, first = sorted(times), 0, 0
    for last, t in enumerate(ordered):
        while t - ordered[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


def burst(requests: int, sets_per_family: int = 2, observe_every: float = 5.0) -> dict[str, Any]:
    with emulated_aws():
        stack = deploy_stack(
            setenv, nacls=1, WafScope="REGIONAL", WafIpSetsPerFamily=sets_per_family, test_defaults=False
        )
        wiring.reset()
        recorder = Recorder()
        local = threading.local()
        stop, seen, observations = threading.Event(), list[str](), [0]

        def observe() -> None:
            with recorder.quiet():
                while not stop.wait(observe_every):
                    seen.extend(waf_violations(stack))
                    observations[0] += 1

        def send(i: int) -> int:
            if not hasattr(local, "handler"):
                local.handler = isolated_api().lambda_handler
            body = {"ip": address(i), "duration": 3600, "targets": ["waf"]}
            return call("api_create_block.json", TOKEN, body=body, handler=local.handler)[0]

        observer = threading.Thread(target=observe)
        with recorder.recording(), task_pool(64) as applies:
            observer.start()
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=32) as pool:
                statuses = Counter(pool.map(send, range(requests)))
            answered = time.monotonic() - started
            for applied in list(applies):
                applied.result()
            settled = time.monotonic() - started
        stop.set()
        observer.join()
        with recorder.quiet():
            final = waf_violations(stack)
            blocks = Counter(str(b["state"]) for b in stack.items("BLOCK#"))
            fill = stack.waf_fill()
        updates = [w for w in emulator.WAF_WRITES if w.action == "UpdateIPSet"]
        accepted = [w.at for w in updates if w.outcome == "ok"]
        names = ours(recorder.calls)
        return {
            "requests": requests,
            "sets_per_family": sets_per_family,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "blocks": dict(sorted(blocks.items())),
            "fill": fill,
            "answered_s": round(answered, 1),
            "settled_s": round(settled, 1),
            "update_calls": len(updates),
            "updates_accepted": len(accepted),
            "updates_refused": dict(Counter(w.outcome for w in updates if w.outcome != "ok")),
            "updates_per_block": round(len(updates) / max(1, blocks.get("active", 0)), 4),
            "peak_updates_per_second": peak_per_second(accepted),
            "aws_calls_per_request": round(len(names) / requests, 2),
            "calls": dict(sorted(Counter(names).items())),
            "apply_retries": len(RETRIES),
            "observations": observations[0] + 1,
            "invariant_violations": len(seen) + len(final),
            "violation_examples": sorted(set(seen + final))[:10],
        }


# -- one sweep with 20,000 active blocks --------------------------------------------------------


def item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it, near enough: attribute names plus values as text."""
    return sum(len(k) + len(json.dumps(v, default=str)) for k, v in item.items())


class ReadUnits:
    """Read request units of the DynamoDB reads our code makes (an ``after-call.dynamodb`` hook):
    4 KB per unit, half a unit when eventually consistent (a GSI Query always is); a GetItem or each
    item of a BatchGetItem rounds up on its own, a Query page on its total."""

    def __init__(self) -> None:
        self.units = 0.0
        self.items = 0
        self.by_call: Counter[str] = Counter()

    def __call__(self, **kwargs: Any) -> None:
        name, parsed, params = kwargs["model"].name, kwargs["parsed"], kwargs.get("params", {})
        if name == "Query":
            factor = 0.5 if "IndexName" in params or not params.get("ConsistentRead") else 1.0
            items = parsed.get("Items", [])
            units = max(1, math.ceil(sum(item_bytes(i) for i in items) / 4096)) * factor
        elif name == "GetItem":
            factor = 1.0 if params.get("ConsistentRead") else 0.5
            items = [parsed["Item"]] if "Item" in parsed else []
            units = max(1, math.ceil(sum(item_bytes(i) for i in items) / 4096)) * factor
        elif name == "BatchGetItem":
            consistent = all(t.get("ConsistentRead") for t in params.get("RequestItems", {}).values())
            items = [i for found in parsed.get("Responses", {}).values() for i in found]
            units = sum(math.ceil(item_bytes(i) / 4096) for i in items) * (1.0 if consistent else 0.5)
        else:
            return
        self.units += units
        self.items += len(items)
        self.by_call[name] += 1


def seed_waf_blocks(stack: Stack, count: int) -> None:
    """``count`` active WAF-only blocks, as applying them leaves the table and the sets: the block
    items (in the live index's WAF partition), their address locks, the sets' members and summaries,
    and the sets' contents. Written directly (applying 20,000 blocks takes the emulator hours)."""
    now = int(time.time())
    table = boto3.resource("dynamodb", region_name=emulator.REGION).Table(stack.table_name)
    ipv4 = [s for s in stack.waf_sets if s.family == 4]
    members: dict[str, list[str]] = {s.name: [] for s in ipv4}
    with table.batch_writer() as batch:
        for i in range(count):
            ip_set = ipv4[i // WAF_SET_LIMIT]
            block_id = f"{i:032x}"
            cidr = f"100.{i // 62500 + 1}.{i // 250 % 250}.{i % 250 + 1}/32"
            expires = now + 3600 + i % 3600
            batch.put_item(
                Item={
                    "pk": f"BLOCK#{block_id}",
                    "sk": "BLOCK",
                    "id": block_id,
                    "cidr": cidr,
                    "family": 4,
                    "direction": "ingress",
                    "nacl_ids": [],
                    "state": "active",
                    "source": "bench",
                    "created_at": now,
                    "state_since": now,
                    "expires_at": expires,
                    "targets": ["waf"],
                    "waf_set": ip_set.name,
                    "gsi1pk": LIVE_WAF,
                    "gsi1sk": f"{expires:010d}#{block_id}",
                }
            )
            batch.put_item(Item={"pk": f"ADDR#{cidr}", "sk": "ADDR", "block_id": block_id, "created_at": now})
            batch.put_item(Item={"pk": f"WAFSET#{ip_set.name}", "sk": cidr, "block_id": block_id})
            members[ip_set.name].append(cidr)
    for name, cidrs in members.items():
        table.put_item(
            Item={
                "pk": f"WAFSET#{name}",
                "sk": waf_dal.SUMMARY,
                "count": len(cidrs),
                "gen": 1,
                "applied_gen": 1,
                "applied_hash": waf_dal.digest(cidrs),
            }
        )
        stack.foreign_waf_update(name, add=tuple(cidrs))


def sweep_cost(blocks: int, nacl_blocks: int) -> dict[str, Any]:
    with emulated_aws():
        stack = deploy_stack(
            setenv,
            nacls=1,
            foreign_rules=ALLOW_ALL,
            WafScope="REGIONAL",
            WafIpSetsPerFamily=2,
            RuleLimit=nacl_blocks,
            test_defaults=False,
        )
        run = wiring.lifecycle()
        for i in range(nacl_blocks):
            block = run.registration.register(BlockRequest(ip=f"192.0.2.{i + 1}", duration=3600), source="bench").block
            stack.start(block.id)
        wait_until(lambda: len(stack.managed(stack.nacl_ids[0])) == nacl_blocks, 120, "NACL blocks active")
        seed_waf_blocks(stack, blocks - nacl_blocks)
        rows = {}
        for label in ("autoblock", "a full read of every live block"):
            reads = ReadUnits()
            session = boto3._get_default_session()._session
            session.register("after-call.dynamodb", reads)
            wiring.reset()
            recorder = Recorder()
            try:
                with recorder.recording():
                    if label == "autoblock":
                        summary = sweeper.lambda_handler(
                            event("schedule_sweep.json"), FakeLambdaContext(function_name="SweeperFunction")
                        )
                    else:
                        live = wiring.lifecycle().store.live()
                        summary = {"live_blocks": len(live), "repairs": {}}
            finally:
                session.unregister("after-call.dynamodb", reads)
            month = reads.units * SWEEPS_PER_MONTH * cost.PRICES["dynamodb_read"].usd
            rows[label] = {
                "calls": dict(sorted(Counter(ours(recorder.calls)).items())),
                "dynamodb_reads": dict(sorted(reads.by_call.items())),
                "items_read": reads.items,
                "read_units": round(reads.units, 1),
                "usd_per_month": round(month, 4),
                "repairs": summary.get("repairs", {}),
            }
        return {
            "active_blocks": blocks,
            "nacl_blocks": nacl_blocks,
            "waf_blocks": blocks - nacl_blocks,
            "fill": stack.waf_fill(),
            "sweeps_per_month": SWEEPS_PER_MONTH,
            "price_per_million_rru": round(cost.PRICES["dynamodb_read"].usd * 1e6, 3),
            "rows": rows,
            "live_partitions": [LIVE, LIVE_WAF],
        }


# -- expiry lag of WAF-held blocks --------------------------------------------------------------


def removals(expiries: dict[str, int], timeout: float) -> list[float]:
    """Wait until each address of ``expiries`` was written into its set and then out of it; each
    one's time out minus its expiry. The times come from the emulator's record of every update
    (``WAF_WRITES``: what each one gave its set, and when moto had applied it), not from a poller:
    a poller thread queues for the one interpreter with the code under test, and measured up to
    0.9 s late under a wave of expiries."""
    deadline = time.monotonic() + timeout
    while True:
        gone = removed_at(expiries)
        if len(gone) == len(expiries) or time.monotonic() > deadline:
            return [gone[address] - expiries[address] for address in gone]
        time.sleep(0.25)


def removed_at(addresses: Iterable[str]) -> dict[str, float]:
    """Each of ``addresses`` that an accepted UpdateIPSet wrote into a set and a later one of that
    set wrote out (and not back in): when that later one was applied."""
    wanted = set(addresses)
    held_in: dict[str, str] = {}  # address → the set whose last update held it
    gone: dict[str, float] = {}
    for write in list(emulator.WAF_WRITES):
        if write.action != "UpdateIPSet" or write.outcome != "ok":
            continue
        now_held = wanted.intersection(write.addresses)
        for address in now_held:
            held_in[address] = write.name
            gone.pop(address, None)
        for address, name in held_in.items():
            if name == write.name and address not in now_held:
                gone.setdefault(address, write.done)
    return gone


def expiry_lag(blocks: int, wave: int = 100) -> dict[str, Any]:
    """Blocks of 20-24 s in WAF only, through the real workflow (an execution each), in waves: time
    from ``expires_at`` to the update that took the address out of its set (``removals``). A wave
    is registered well before its first expiry (registering 100 blocks and starting their
    executions takes the emulator seconds), so each address is in its set before it is due. What is
    left on the heap then is frozen (``gc.freeze``): a full collection of the emulator's one heap
    stops every thread for up to a second, which would measure the emulator, not the release."""
    lags: list[float] = []
    with emulated_aws(), contextlib.ExitStack() as frozen:
        frozen.callback(gc.unfreeze)  # whatever happens, the heap is the collector's again
        stack = deploy_stack(setenv, nacls=1, WafScope="REGIONAL", WafIpSetsPerFamily=2, test_defaults=False)
        run = wiring.lifecycle()
        for first in range(0, blocks, wave):
            expiries: dict[str, int] = {}
            for i in range(first, min(blocks, first + wave)):
                request = BlockRequest(ip=address(i), duration=20 + random.randint(0, 4), targets=["waf"])
                block = run.registration.register(request, source="bench").block
                expiries[block.cidr] = block.expires_at
                stack.start(block.id)
            gc.collect()  # before the wave's first expiry, about 20 s away
            gc.freeze()
            lags += removals(expiries, 120)
    return lag_summary(blocks, lags)


def run(sizes: dict[str, Any], step: Callable[[str], None] = print) -> dict[str, Any]:
    step(f"WAF burst ({sizes['waf_burst']:,} requests)")
    results = {"burst": burst(sizes["waf_burst"])}
    step(f"WAF sweep with {sizes['sweep_blocks']:,} active blocks")
    results["sweep"] = sweep_cost(sizes["sweep_blocks"], sizes["sweep_nacl_blocks"])
    step(f"WAF expiry lag ({sizes['waf_lag_blocks']} blocks)")
    results["expiry_lag"] = expiry_lag(sizes["waf_lag_blocks"])
    return results
