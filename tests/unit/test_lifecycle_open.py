"""Opening a block (``Lifecycle.open``): a new block, an extension, a refusal, a full range, a stale
slot view, a lost race, a workflow that will not start. On fakes of the ports (``tests.unit.fakes``)."""

from __future__ import annotations

import pytest

from autoblock.errors import BlockConflict, CapacityExceeded, WorkflowError
from autoblock.logic import clock
from autoblock.models import BlockRequest
from tests.unit.fakes import T0, conflict, lifecycle

IP = "203.0.113.7"
CIDR = "203.0.113.7/32"


def test_a_new_address_gets_one_pending_block_holding_a_rule_number_per_nacl_and_direction() -> None:
    # Given an empty range
    rig = lifecycle()

    # When an address is blocked both ways
    opened = rig.open(IP, direction="both", reason="ssh brute force")

    # Then one pending block holds one number in each NACL and direction, and the address's lock
    block = rig.store.block(opened.block.id)
    assert opened.outcome == "created"
    assert (block.state, block.cidr, block.expires_at) == ("pending", CIDR, int(T0) + 3600)
    rules = {"acl-a|ingress": 100, "acl-a|egress": 100, "acl-b|ingress": 100, "acl-b|egress": 100}
    assert block.rules == rules
    assert rig.store.held() == {key: {100: block.id} for key in rules}
    assert rig.store.locks == {CIDR: block.id}
    assert rig.store.events(CIDR) == [("requested", block.id)]
    # and its workflow starts with every number already reserved; no NACL is written yet
    (ticket,) = rig.workflow.started
    assert (ticket.block_id, ticket.state, ticket.reserved, ticket.rules) == (block.id, "pending", True, rules)
    assert ticket.expires_at == clock.iso_z(T0 + 3600)
    assert rig.nacls.denies("acl-a") == rig.nacls.denies("acl-b") == []


def test_blocking_an_address_again_the_same_way_extends_its_block() -> None:
    # Given a blocked address
    rig = lifecycle()
    first = rig.open(IP, duration=3600).block
    rig.clock.advance(600)

    # When it is blocked again, for longer than it has left
    again = rig.open(IP, duration=7200, reason="still at it")

    # Then its block ends later, with an extended event; no second block, no second number
    assert again.outcome == "extended"
    assert again.block.id == first.id
    assert rig.store.block(first.id).expires_at == int(T0) + 600 + 7200
    assert rig.store.events(CIDR) == [("requested", first.id), ("extended", first.id)]
    assert rig.store.held() == {"acl-a|ingress": {100: first.id}, "acl-b|ingress": {100: first.id}}
    assert len(rig.workflow.started) == 1


def test_a_repeat_that_would_end_sooner_writes_nothing() -> None:
    # Given a block of an hour
    rig = lifecycle()
    first = rig.open(IP, duration=3600).block
    rig.clock.advance(60)
    before = rig.store.snapshot()

    # When the address is blocked again for a minute
    again = rig.open(IP, duration=60)

    # Then the block is answered as it is, and nothing is written
    assert (again.outcome, again.block.expires_at) == ("extended", first.expires_at)
    assert rig.store.snapshot() == before
    assert "extend" not in rig.store.calls


def test_an_address_blocked_one_way_is_not_blocked_the_other_way() -> None:
    # Given an address blocked ingress
    rig = lifecycle()
    first = rig.open(IP).block
    rig.clock.advance(1)  # events of one millisecond are ordered by block id, as in the table

    # When it is blocked egress
    with pytest.raises(BlockConflict) as refused:
        rig.open(IP, direction="egress")

    # Then the request is refused, saying why, and the refusal is an event of no block
    assert str(refused.value) == (
        f"{CIDR} is already blocked (ingress, block {first.id}); unblock it before blocking it egress"
    )
    assert rig.store.events(CIDR) == [("requested", first.id), ("rejected", "")]
    assert rig.store.history(CIDR)[-1].reason == str(refused.value)
    assert len(rig.store.blocks) == 1


def test_a_full_range_with_when_full_reject_refuses_the_block_and_holds_nothing() -> None:
    # Given a range of one number, taken
    rig = lifecycle(rule_limit=1, nacl_ids="acl-a")
    taken = rig.open("198.51.100.1").block

    # When another address is blocked
    with pytest.raises(CapacityExceeded) as refused:
        rig.open(IP)

    # Then it is refused with the range's capacity in words
    assert str(refused.value) == (
        "no free rule number: acl-a ingress holds 1 of 1 blocks (rules 100-100, RuleLimit); WhenFull=reject"
    )
    # and recorded as a rejected block with its events, holding no number, no lock, no workflow
    (block,) = [b for b in rig.store.blocks.values() if b.cidr == CIDR]
    assert (block.state, block.rules, block.end_reason) == ("rejected", {}, f"CapacityExceeded: {refused.value}")
    assert rig.store.events(CIDR) == [("requested", block.id), ("rejected", block.id)]
    assert rig.store.held() == {"acl-a|ingress": {100: taken.id}}
    assert rig.store.locks == {"198.51.100.1/32": taken.id}
    assert [t.block_id for t in rig.workflow.started] == [taken.id]


def test_a_full_range_with_eviction_creates_the_block_without_numbers() -> None:
    # Given a full range and WhenFull=evict-soonest-expiring
    rig = lifecycle(rule_limit=1, nacl_ids="acl-a", when_full="evict-soonest-expiring")
    rig.open("198.51.100.1")

    # When another address is blocked
    opened = rig.open(IP)

    # Then its block is created holding nothing yet, and its workflow is told to reserve
    assert (opened.outcome, opened.block.state, opened.block.rules) == ("created", "pending", {})
    assert rig.store.locks[CIDR] == opened.block.id
    assert rig.ticket(opened.block.id).reserved is False


def test_reserve_evicts_the_active_block_that_expires_first_and_takes_its_number() -> None:
    # Given a full range of two active blocks, the second ending first
    rig = lifecycle(rule_limit=2, nacl_ids="acl-a", when_full="evict-soonest-expiring")
    late = rig.open("198.51.100.1", duration=7200).block
    soon = rig.open("198.51.100.2", duration=600).block
    rig.run_until_active(late.id)
    rig.run_until_active(soon.id)
    new = rig.open(IP).block

    # When the new block's Reserve task runs
    ticket = rig.lifecycle.reserve(rig.ticket(new.id))

    # Then the block that ends first is evicted (its entry removed), and its number is the new block's
    assert rig.store.block(soon.id).state == "evicted"
    assert rig.store.events("198.51.100.2/32")[-1] == ("evicted", soon.id)
    assert rig.store.block(late.id).state == "active"
    assert (ticket.reserved, ticket.rules) == (True, {"acl-a|ingress": 101})
    assert rig.store.held() == {"acl-a|ingress": {100: late.id, 101: new.id}}
    assert rig.nacls.denies("acl-a") == [("ingress", 100, "198.51.100.1/32")]
    # and the new block names the block it evicted
    assert rig.store.block(new.id).evicted == [{"id": soon.id, "ip": "198.51.100.2/32"}]


def test_a_number_the_slot_view_thinks_free_but_another_container_took_is_skipped() -> None:
    # Given a container whose slot view has seen 100 taken, and another container that took 101
    rig = lifecycle(nacl_ids="acl-a")
    first = rig.open("198.51.100.1").block
    other = rig.another_container().open(BlockRequest(ip="198.51.100.2"), "test").block
    assert rig.store.held() == {"acl-a|ingress": {100: first.id, 101: other.id}}

    # When the first container blocks another address
    opened = rig.open(IP)

    # Then the transaction that asked for 101 is refused, and the next number is taken
    assert opened.block.rules == {"acl-a|ingress": 102}
    assert rig.store.calls["create"] == 4  # first, other, the one refused for 101, the one for 102


def test_a_number_freed_by_another_container_is_found_before_the_range_is_called_full() -> None:
    # Given a container whose slot view saw the range full
    rig = lifecycle(rule_limit=2, nacl_ids="acl-a")
    first = rig.open("198.51.100.1").block
    rig.open("198.51.100.2")
    # and another container that unblocked the first block since
    rig.another_container().unblock(first.id, "ops")
    reads = rig.store.calls["slots"]

    # When the first container blocks another address
    opened = rig.open(IP)

    # Then the view is read again before calling the range full: no 503, the freed number is taken
    assert (opened.outcome, opened.block.rules) == ("created", {"acl-a|ingress": 100})
    assert rig.store.calls["slots"] == reads + 1


def test_a_create_cancelled_by_a_concurrent_transaction_is_tried_again() -> None:
    # Given a table whose next create is cancelled by a TransactionConflict
    rig = lifecycle()
    rig.store.fail("create", conflict("create block"))

    # When an address is blocked
    opened = rig.open(IP)

    # Then the create is tried again, after a short jittered pause, and the block exists
    assert opened.outcome == "created"
    assert rig.store.block(opened.block.id).state == "pending"
    assert rig.store.calls["create"] == 2
    assert len(rig.clock.slept) == 1 and 0 <= rig.clock.slept[0] <= 0.1


def test_a_block_whose_workflow_cannot_start_ends_failed_and_holds_nothing() -> None:
    # Given a workflow that cannot be started
    rig = lifecycle()
    rig.workflow.cannot_start()

    # When an address is blocked
    with pytest.raises(WorkflowError):
        rig.open(IP)

    # Then the block it created ends failed at once, giving back its numbers and lock
    (block,) = rig.store.blocks.values()
    assert (block.state, block.end_reason) == ("failed", "the workflow could not be started")
    assert rig.store.held() == {}
    assert rig.store.locks == {}
    assert rig.store.events(CIDR) == [("requested", block.id), ("failed", block.id)]
    assert rig.workflow.started == []
