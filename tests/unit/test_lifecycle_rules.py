"""Escalation and dry runs, on fakes of the ports (``tests.unit.fakes``)."""

from __future__ import annotations

from autoblock.models import BlockRequest
from tests.unit.fakes import T0, lifecycle

IP = "203.0.113.7"
CIDR = "203.0.113.7/32"
DAY = 86400


def test_blocks_applied_within_the_window_multiply_the_next_duration() -> None:
    # Given an address blocked, applied and expired twice within the last days
    rig = lifecycle()
    for _ in range(2):
        block = rig.open(IP, duration=3600).block
        rig.run_until_active(block.id)
        rig.clock.advance(block.expires_at - rig.clock.now())  # the second one is escalated already
        assert rig.lifecycle.expire(block.id).state == "expired"
        rig.clock.advance(DAY)

    # When it is blocked a third time for an hour
    opened = rig.open(IP, duration=3600)

    # Then the block lasts 3600 x 2^2 seconds, and an escalated event says so
    assert opened.block.expires_at == int(rig.clock.now()) + 14400
    escalated = rig.store.history(CIDR)[-1]
    assert (escalated.event, escalated.duration) == ("escalated", 14400)
    assert escalated.reason == "3rd block in 30 days: 3600 s x 2^2 = 14400 s (cap 604800 s)"


def test_an_escalated_duration_stops_at_max_duration_seconds() -> None:
    # Given an address applied three times this week, and MaxDurationSeconds of 10000
    rig = lifecycle(max_duration_seconds=10000)
    rig.store.offenders[CIDR] = [int(T0) - 3 * DAY, int(T0) - 2 * DAY, int(T0) - DAY]

    # When it is blocked for an hour
    opened = rig.open(IP, duration=3600)

    # Then the block lasts MaxDurationSeconds
    assert opened.block.expires_at == int(T0) + 10000
    assert rig.store.history(CIDR)[-1].reason == (
        "4th block in 30 days: 3600 s x 2^3 > 10000 s: capped at MaxDurationSeconds, 10000 s"
    )


def test_blocks_applied_before_the_window_do_not_count_and_are_forgotten() -> None:
    # Given an address applied 31 days ago and yesterday
    rig = lifecycle()
    rig.store.offenders[CIDR] = [int(T0) - 31 * DAY, int(T0) - DAY]

    # When it is blocked for an hour
    opened = rig.open(IP, duration=3600)

    # Then only yesterday's block counts, and the older time leaves the offender record
    assert opened.block.expires_at == int(T0) + 7200
    assert rig.store.history(CIDR)[-1].reason.startswith("2nd block in 30 days: 3600 s x 2^1 = 7200 s")
    assert rig.store.offenders[CIDR] == [int(T0) - DAY]


def test_a_dry_run_holds_nothing_and_says_what_it_would_do() -> None:
    # Given an empty range
    rig = lifecycle()

    # When a dry run is asked for
    opened = rig.open(IP, dry_run=True)

    # Then a dry-run block records the sentence of what would have happened, and nothing is held
    block = rig.store.block(opened.block.id)
    assert (opened.outcome, block.state, block.dry_run) == ("dry-run", "dry-run", True)
    assert block.end_reason == (
        f"would deny {CIDR} for 3600 s in acl-a ingress rule 100, acl-b ingress rule 100 "
        "(dry_run in the request); nothing was written to any NACL"
    )
    assert (rig.store.held(), rig.store.locks, rig.store.offenders) == ({}, {}, {})
    assert rig.nacls.denies("acl-a") == rig.nacls.denies("acl-b") == []
    assert rig.workflow.started == []
    assert [e for e, _ in rig.store.events(CIDR)] == ["requested", "dry-run"]


def test_a_stack_in_dry_run_says_so_and_tells_of_the_extension_it_would_make() -> None:
    # Given a blocked address, and then the stack switched to DryRun=true
    rig = lifecycle()
    block = rig.open(IP, duration=600).block
    updated = rig.another_container(dry_run=True)

    # When the address is blocked again
    opened = updated.open(BlockRequest(ip=IP, duration=3600), "test")

    # Then nothing is extended, and the dry run says what would have been
    assert opened.block.end_reason == (
        f"would extend block {block.id} to 2027-01-15T09:00:00Z (DryRun=true); nothing was written to any NACL"
    )
    assert rig.store.block(block.id).expires_at == int(T0) + 600
