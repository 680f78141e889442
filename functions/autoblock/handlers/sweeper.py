"""The sweeper, on a one-minute schedule: reconcile the managed range of every NACL with the table."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from autoblock.handlers.wiring import sweeper
from autoblock.logic.sweeper import SweepReport

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def record(report: SweepReport) -> dict[str, Any]:
    """Emit one metric per repair kind (dimension ``Kind``) and return the sweep's summary."""
    counts = report.counts()
    for kind, count in counts.items():
        with single_metric(name="SweeperRepairs", unit=MetricUnit.Count, value=count) as metric:
            metric.add_dimension(name="Kind", value=kind)
    metrics.add_metric(name="SweeperRepairsTotal", unit=MetricUnit.Count, value=len(report.repairs))
    metrics.add_metric(name="LiveBlocks", unit=MetricUnit.Count, value=report.live_blocks)
    return {"repairs": counts, "live_blocks": report.live_blocks, "entries_seen": report.entries_seen}


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return record(sweeper().sweep())
