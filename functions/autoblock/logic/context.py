"""What every part of a block's life shares: the settings, the ports, the clock, and the history
event and metric helpers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from autoblock.logic.ports import BlockStore, NaclGateway, WafGateway, WorkflowGateway
from autoblock.models import Block, EventKind, HistoryEvent, Settings

logger = Logger(service="autoblock", child=True)


def count(name: str, value: int = 1, **dimensions: str) -> None:
    """One metric data point, published at once (EMF), with its own dimensions."""
    with single_metric(name=name, unit=MetricUnit.Count, value=value) as metric:
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)


@dataclass
class Context:
    settings: Settings
    store: BlockStore
    nacls: NaclGateway
    workflow: WorkflowGateway
    now: Callable[[], float] = field(default=time.time)
    sleep: Callable[[float], None] = field(default=time.sleep)
    waf: WafGateway | None = None  # None: the stack has no WAF IP set (WafScope=NONE)

    def event(
        self,
        block: Block,
        kind: str,
        source: str,
        reason: str,
        duration: int | None = None,
        expires_at: int | None = None,
        at: float | None = None,
    ) -> HistoryEvent:
        return HistoryEvent(
            at=self.now() if at is None else at,
            block_id=block.id,
            cidr=block.cidr,
            event=cast(EventKind, kind),
            source=source,
            reason=reason,
            duration=duration,
            expires_at=expires_at,
        )

    def record(self, *events: HistoryEvent) -> None:
        """Write events that go with no transition. A failure never stops what they record: it is
        logged and counted (metric HistoryWriteFailures)."""
        try:
            self.store.add_history(*events)
        except Exception:  # the block or the repair itself already happened
            logger.exception("history not written", extra={"events": [e.event for e in events]})
            count("HistoryWriteFailures", len(events))
