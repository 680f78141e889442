"""The sweeper's repairs on fakes of the ports (``tests.unit.fakes``): what it removes, what it never
touches, what it puts back, what it ends late."""

from __future__ import annotations

from autoblock.models import Entry
from tests.unit.fakes import lifecycle

IP = "203.0.113.7"
CIDR = "203.0.113.7/32"


def test_an_orphan_deny_entry_in_the_range_is_removed() -> None:
    # Given a deny-all entry in the range that no block holds (its block's release died half-way)
    rig = lifecycle()
    rig.nacls.add(Entry("acl-a", 101, False, "deny", "-1", "198.51.100.9/32"))

    # When the sweeper runs
    report = rig.sweeper().sweep()

    # Then the entry is gone, and the number it claimed meanwhile is free again
    assert report.counts() == {"orphan_removed": 1}
    assert rig.nacls.denies("acl-a") == []
    assert rig.store.held() == {}


def test_a_foreign_rule_in_the_range_is_quarantined_and_never_touched() -> None:
    # Given an allow rule someone wrote in the range
    rig = lifecycle()
    allow = Entry("acl-a", 102, False, "allow", "6", "0.0.0.0/0")
    rig.nacls.add(allow)

    # When the sweeper runs, twice
    first = rig.sweeper().sweep()
    second = rig.sweeper().sweep()

    # Then its number is held by "foreign", so no block takes it, and the rule is left as it was
    assert first.counts() == {"foreign_quarantined": 1}
    assert second.counts() == {}
    assert rig.nacls.at("acl-a", 102) == allow
    assert rig.store.held() == {"acl-a|ingress": {102: "foreign"}}


def test_a_missing_entry_of_an_active_block_is_put_back() -> None:
    # Given an active block whose entry in acl-a someone deleted
    rig = lifecycle()
    block = rig.open(IP).block
    rig.run_until_active(block.id)
    entry = rig.nacls.at("acl-a", 100)
    assert entry is not None
    rig.nacls.delete(entry)
    rig.clock.advance(1)

    # When the sweeper runs
    report = rig.sweeper().sweep()

    # Then the entry is back, and the block's history tells of the repair
    assert report.counts() == {"reapplied": 1}
    assert rig.nacls.denies("acl-a") == [("ingress", 100, CIDR)]
    repaired = rig.store.history(CIDR)[-1]
    assert (repaired.event, repaired.block_id, repaired.source) == ("repaired", block.id, "sweeper")
    assert repaired.reason == "reapplied (acl-a ingress rule 100)"


def test_an_active_block_past_its_expiry_and_the_grace_is_expired_late() -> None:
    # Given an active block whose execution did not release it at its expiry
    rig = lifecycle(sweeper_grace_seconds=60)
    block = rig.open(IP, duration=600).block
    rig.run_until_active(block.id)
    rig.clock.advance(600 + 60)

    # When the sweeper runs
    report = rig.sweeper().sweep()

    # Then the block is expired, its entries and numbers given back
    assert report.counts() == {"expired_late": 1}
    assert rig.store.block(block.id).state == "expired"
    assert rig.nacls.denies("acl-a") == rig.nacls.denies("acl-b") == []
    assert (rig.store.held(), rig.store.locks) == ({}, {})


def test_an_active_block_within_the_grace_is_left_to_its_workflow() -> None:
    # Given an active block just past its expiry, within the sweeper's grace
    rig = lifecycle(sweeper_grace_seconds=60)
    block = rig.open(IP, duration=600).block
    rig.run_until_active(block.id)
    rig.clock.advance(600 + 59)

    # When the sweeper runs
    report = rig.sweeper().sweep()

    # Then it repairs nothing: the workflow's own Expire comes first
    assert report.counts() == {}
    assert rig.store.block(block.id).state == "active"


def test_a_block_created_while_the_sweeper_reads_keeps_its_rule_number() -> None:
    # Given a sweep that has read the live blocks, and a block created just before it reads the
    # rule numbers (a new block takes its number in the transaction that creates it)
    rig = lifecycle()
    created: list[str] = []
    rig.store.before("slots", lambda: created.append(rig.open("198.51.100.7").block.id))

    # When the sweep reads the rule numbers and reconciles them
    report = rig.sweeper().sweep()

    # Then the new block's number is left to it: nothing freed, nothing repaired
    assert report.counts() == {}
    assert rig.store.held() == {"acl-a|ingress": {100: created[0]}, "acl-b|ingress": {100: created[0]}}
