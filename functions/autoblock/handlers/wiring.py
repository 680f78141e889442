"""The objects a handler needs, built once per process from the settings: where the adapters of
``dal`` are joined to the ports of ``logic`` (mypy checks that each meets its protocol here)."""

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
    table = BlockTable(config.table_name, config.history_ttl_seconds)
    return Lifecycle(config, table, Nacls(), Workflow(config.state_machine_arn))


@cache
def sweeper() -> Sweeper:
    run = lifecycle()
    return Sweeper(run, run.store, run.ctx.workflow.status)


def reset() -> None:
    """Forget every cached object (tests point the handlers at a new emulated stack)."""
    from autoblock.dal import aws

    for cached in (lifecycle, sweeper, settings, aws.client, aws._table):
        cached.cache_clear()
