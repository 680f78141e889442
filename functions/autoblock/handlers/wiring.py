"""The objects a handler needs, built once per process from the settings: where the adapters of
``dal`` are joined to the ports of ``logic`` (mypy checks that each meets its protocol here)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from autoblock.dal.nacl import Nacls
from autoblock.dal.secrets import Secret
from autoblock.dal.table import BlockTable
from autoblock.dal.waf import WafSets
from autoblock.dal.workflow import Workflow
from autoblock.logic.lifecycle import Lifecycle
from autoblock.models import settings

if TYPE_CHECKING:
    from autoblock.logic.sweeper import Sweeper


@cache
def lifecycle() -> Lifecycle:
    config = settings()
    table = BlockTable(config.table_name, config.history_ttl_seconds)
    nacls = Nacls(config.member_role_name, config.partition)
    waf = WafSets(config.table_name, config.waf_sets, config.waf_scope, config.waf_region) if config.waf_sets else None
    return Lifecycle(config, table, nacls, Workflow(config.state_machine_arn), waf=waf)


@cache
def secret() -> Secret:
    return Secret(settings().token_secret_id)


def token() -> str:
    """The API's bearer token (read once every few minutes)."""
    return secret().value()


@cache
def sweeper() -> Sweeper:
    from autoblock.logic.sweeper import Sweeper

    run = lifecycle()
    return Sweeper(run, run.store, run.ctx.workflow.status)


def reset() -> None:
    """Forget every cached object (tests point the handlers at a new emulated stack)."""
    from autoblock.dal import aws, waf

    for cached in (lifecycle, secret, sweeper, settings, aws.client, aws._table, waf._wafv2):
        cached.cache_clear()
