"""What bench/cost.py states about an idle sweep is what an idle sweep does on emulated AWS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3

from autoblock.handlers import sweeper, wiring
from autoblock_local.emulator import FakeLambdaContext
from autoblock_local.invoke import event
from bench import cost
from tests.integration.conftest import Stack


def idle_sweep_reads() -> list[tuple[str, bool, bool, int]]:
    """Every DynamoDB read an idle sweep makes: (operation, on an index, consistent, items asked for)."""
    reads: list[tuple[str, bool, bool, int]] = []

    def note(**kwargs: Any) -> None:
        params = kwargs["params"]
        if kwargs["model"].name == "BatchGetItem":
            for table in params["RequestItems"].values():
                reads.append(("BatchGetItem", False, bool(table.get("ConsistentRead")), len(table["Keys"])))
        elif kwargs["model"].name == "Query":
            reads.append(("Query", "IndexName" in params, bool(params.get("ConsistentRead")), 0))

    session = boto3._get_default_session()._session
    session.register("provide-client-params.dynamodb", note)
    wiring.reset()
    try:
        summary = sweeper.lambda_handler(
            event("schedule_sweep.json"), FakeLambdaContext(function_name="SweeperFunction")
        )
    finally:
        session.unregister("provide-client-params.dynamodb", note)
        wiring.reset()
    assert summary["repairs"] == {}
    return reads


def test_an_idle_sweep_reads_what_the_cost_model_states(stack: Stack) -> None:
    # When an idle stack is swept
    reads = idle_sweep_reads()

    # Then: the live index twice (eventually consistent), each NACL's two ranges once (consistent)
    stated = cost.idle_sweep_reads(len(stack.nacl_ids), 0)
    assert stated == {
        "Query of the live index": (reads.count(("Query", True, False, 0)), 0.5),
        "Query of the rule numbers of a NACL and direction": (reads.count(("Query", False, True, 0)), 1.0),
    }
    assert len(reads) == sum(n for n, _ in stated.values())


def test_an_idle_sweep_with_waf_reads_what_the_cost_model_states(deploy: Callable[..., Stack]) -> None:
    # Given an idle stack with 2 WAF IP sets per family
    stack = deploy(WafScope="REGIONAL", WafIpSetsPerFamily=2)

    # When it is swept
    reads = idle_sweep_reads()

    # Then: the live index three times (its WAF partition once, up to now), each NACL's ranges, and
    # the four sets' summaries in one consistent BatchGetItem
    stated = cost.idle_sweep_reads(len(stack.nacl_ids), 4)
    index_queries = reads.count(("Query", True, False, 0))
    assert stated == {
        "Query of the live index": (index_queries - 1, 0.5),
        "Query of the overdue WAF-only blocks": (1, 0.5),
        "Query of the rule numbers of a NACL and direction": (reads.count(("Query", False, True, 0)), 1.0),
        "summary item of a WAF IP set (BatchGetItem)": (reads.count(("BatchGetItem", False, True, 4)) * 4, 1.0),
    }
