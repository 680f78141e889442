"""What bench/cost.py states about an idle sweep is what an idle sweep does on emulated AWS."""

from __future__ import annotations

from typing import Any

import boto3

from autoblock.handlers import sweeper, wiring
from autoblock_local.emulator import FakeLambdaContext
from autoblock_local.invoke import event
from bench import cost
from tests.integration.conftest import Stack


def test_an_idle_sweep_reads_what_the_cost_model_states(stack: Stack) -> None:
    # Given: an idle stack; every DynamoDB read an idle sweep makes, with its consistency
    reads: list[tuple[bool, bool]] = []

    def note(**kwargs: Any) -> None:
        params = kwargs["params"]
        reads.append(("IndexName" in params, bool(params.get("ConsistentRead"))))

    session = boto3._get_default_session()._session
    session.register("provide-client-params.dynamodb.Query", note)
    wiring.reset()
    try:
        # When
        summary = sweeper.lambda_handler(
            event("schedule_sweep.json"), FakeLambdaContext(function_name="SweeperFunction")
        )
    finally:
        session.unregister("provide-client-params.dynamodb.Query", note)
        wiring.reset()

    # Then: the live index twice (eventually consistent), each NACL's two ranges once (consistent)
    assert summary["repairs"] == {}
    nacls = len(stack.nacl_ids)
    stated = {
        what: (2 * nacls if count == "2 per NACL" else int(count), units)
        for what, (count, units) in cost.IDLE_SWEEP_READS.items()
    }
    assert stated == {
        "Query of the live index": (reads.count((True, False)), 0.5),
        "Query of the rule numbers of a NACL and direction": (reads.count((False, True)), 1.0),
    }
    assert len(reads) == sum(n for n, _ in stated.values())
