"""The objects a handler needs, built once per process from the settings."""

from __future__ import annotations

from functools import cache

from autoblock.dal.nacl import Nacls
from autoblock.dal.table import BlockTable
from autoblock.dal.workflow import Workflow
from autoblock.logic.lifecycle import Lifecycle
from autoblock.logic.sweeper import Sweeper
from autoblock.models import settings


@cache
def lifecycle() -> Lifecycle:
    config = settings()
    return Lifecycle(config, BlockTable(config.table_name, config.history_ttl_seconds), Nacls())  # type: ignore[arg-type]


@cache
def workflow() -> Workflow:
    return Workflow(settings().state_machine_arn)


@cache
def sweeper() -> Sweeper:
    run = lifecycle()
    return Sweeper(run, run.table, workflow().status)  # type: ignore[arg-type]


def reset() -> None:
    """Forget every cached object (tests point the handlers at a new emulated stack)."""
    from autoblock.dal import aws

    for cached in (lifecycle, workflow, sweeper, settings, aws.client, aws._table):
        cached.cache_clear()
