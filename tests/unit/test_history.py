"""History events that go with no transition are best effort: a failed write never changes the outcome."""

from __future__ import annotations

from typing import Any

import pytest

from autoblock.errors import BlockConflict
from autoblock.logic.lifecycle import Lifecycle
from autoblock.models import HistoryEvent, Settings

SETTINGS = Settings(
    table_name="blocks",
    nacl_ids=("acl-1",),
    rule_number_start=10,
    rule_limit=5,
    default_duration_seconds=3600,
    max_duration_seconds=86400,
    min_prefix_length_v4=24,
    min_prefix_length_v6=64,
)


class FailingHistory:
    def __init__(self) -> None:
        self.tried: list[HistoryEvent] = []

    def add_history(self, *events: HistoryEvent) -> None:
        self.tried.extend(events)
        raise RuntimeError("DynamoDB is having a bad day")


def test_a_refusal_is_answered_even_when_its_event_cannot_be_written(capsys: pytest.CaptureFixture[str]) -> None:
    table: Any = FailingHistory()
    unused: Any = None  # neither NACLs nor the workflow are reached
    lifecycle = Lifecycle(SETTINGS, table, nacls=unused, workflow=unused, now=lambda: 1_800_000_000.5)

    error = lifecycle.registration._refused(BlockConflict("already blocked egress"), "203.0.113.7/32", "elastalert:x")

    assert isinstance(error, BlockConflict)
    (event,) = table.tried
    assert (event.event, event.block_id, event.source, event.reason) == (
        "rejected",
        "",
        "elastalert:x",
        "already blocked egress",
    )
    assert '"HistoryWriteFailures"' in capsys.readouterr().out
