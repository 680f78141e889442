"""The sweeper, on a one-minute schedule: reconcile the managed range of every NACL with the table."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from autoblock.handlers.wiring import sweeper
from autoblock.logic.slots import split_slot_key
from autoblock.logic.sweeper import SweepReport
from autoblock.models import settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def record(report: SweepReport, rule_limit: int) -> dict[str, Any]:
    """Emit the sweep's metrics and return its summary: repairs per kind (dimension ``Kind``), rule
    numbers in use per NACL and direction, and the fullest range in percent (the 80 % alarm's metric)."""
    counts = report.counts()
    for kind, count in counts.items():
        with single_metric(name="SweeperRepairs", unit=MetricUnit.Count, value=count) as metric:
            metric.add_dimension(name="Kind", value=kind)
    metrics.add_metric(name="SweeperRepairsTotal", unit=MetricUnit.Count, value=len(report.repairs))
    metrics.add_metric(name="LiveBlocks", unit=MetricUnit.Count, value=report.live_blocks)
    for key, used in report.slots_in_use.items():
        nacl_id, direction = split_slot_key(key)
        with single_metric(name="SlotsInUse", unit=MetricUnit.Count, value=used) as metric:
            metric.add_dimension(name="NaclId", value=nacl_id)
            metric.add_dimension(name="Direction", value=direction)
    fullest = max(report.slots_in_use.values(), default=0) * 100 / rule_limit
    metrics.add_metric(name="SlotsInUsePercentMax", unit=MetricUnit.Percent, value=fullest)
    return {
        "repairs": counts,
        "live_blocks": report.live_blocks,
        "entries_seen": report.entries_seen,
        "slots_in_use_percent_max": fullest,
    }


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return record(sweeper().sweep(), settings().rule_limit)
