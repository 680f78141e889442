"""The sweeper, on a one-minute schedule: reconcile the managed range of every NACL with the table.

It runs 43,800 times a month, so an idle sweep publishes nothing: every custom metric is billed per
month it has data, and a minute's sample of "nothing happened" would cost $0.30 a month each. Alarms
on these metrics treat missing data as not breaching. Nor is it traced (Tracing: PassThrough).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from autoblock.handlers.wiring import sweeper
from autoblock.logic.sweeper import SweepReport
from autoblock.models import settings

logger = Logger()
metrics = Metrics()


def record(report: SweepReport, rule_limit: int) -> dict[str, Any]:
    """Publish what the sweep has to say and return its summary.

    Only when it is not zero: repairs per kind (dimension ``Kind``) and their total (the repairs
    alarm's metric), the live blocks, the fullest (NACL, direction) range in percent of
    RuleLimit (the 80 % alarm's metric), and the addresses each WAF IP set holds (``WafSetAddresses``,
    dimension ``IpSet``: the dashboard's WAF widget). Rule numbers per NACL are in the summary and
    GET /status.
    """
    counts = report.counts()
    for kind, count in counts.items():
        with single_metric(name="SweeperRepairs", unit=MetricUnit.Count, value=count) as metric:
            metric.add_dimension(name="Kind", value=kind)
    for ip_set, used in sorted(report.waf_sets.items()):
        if used:
            with single_metric(name="WafSetAddresses", unit=MetricUnit.Count, value=used) as metric:
                metric.add_dimension(name="IpSet", value=ip_set)
    fullest = max(report.slots_in_use.values(), default=0) * 100 / rule_limit
    if report.repairs:
        metrics.add_metric(name="SweeperRepairsTotal", unit=MetricUnit.Count, value=len(report.repairs))
    if report.live_blocks:
        metrics.add_metric(name="LiveBlocks", unit=MetricUnit.Count, value=report.live_blocks)
    if fullest:
        metrics.add_metric(name="SlotsInUsePercentMax", unit=MetricUnit.Percent, value=fullest)
    if metrics.metric_set:  # flush_metrics() would warn (a log line) on an idle sweep
        metrics.flush_metrics()
    return {
        "repairs": counts,
        "live_blocks": report.live_blocks,
        "entries_seen": report.entries_seen,
        "slots_in_use": report.slots_in_use,
        "slots_in_use_percent_max": fullest,
        **({"waf_sets": report.waf_sets} if report.waf_sets else {}),
    }


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return record(sweeper().sweep(), settings().rule_limit)
