"""WAF IP sets as a target, on fakes of the ports (``tests.unit.fakes``): where a block goes, what
is refused at the edge, WhenFull, release and the sweeper's repair. The writer itself (lock tokens,
pacing, coalescing) runs against emulated WAF in tests/integration/test_waf.py."""

from __future__ import annotations

import pytest

from autoblock.errors import CapacityExceeded, InvalidRequest
from autoblock.models import WAF_SET_LIMIT
from tests.unit.fakes import WAF_SETS, Rig, lifecycle

IP = "203.0.113.7"
CIDR = "203.0.113.7/32"


def waf_rig(**overrides: object) -> Rig:
    return lifecycle(**{"waf_scope": "REGIONAL", "waf_ip_sets": WAF_SETS, **overrides})


def fill(rig: Rig, name: str, count: int) -> None:
    """``count`` addresses of other blocks in the set (the table's members, and what WAF holds)."""
    members = rig.store.waf_members.setdefault(name, {})
    for i in range(count):
        members[f"10.{i // 65536}.{i // 256 % 256}.{i % 256}/32"] = f"{i:032x}"
    assert rig.waf is not None
    rig.waf.sets[name] = set(members)


def test_a_waf_block_holds_its_address_in_a_set_and_is_applied_once_the_set_has_it() -> None:
    # Given a stack with WAF IP sets
    rig = waf_rig()
    assert rig.waf is not None

    # When an address is blocked in WAF only
    opened = rig.open(IP, targets=["waf"])

    # Then the block is pending in the first IPv4 set, holds no rule number and no NACL entry
    block = opened.block
    assert (block.state, block.targets, block.waf_set, block.rules) == ("pending", ["waf"], "autoblock-v4-1", {})
    assert rig.store.waf_members["autoblock-v4-1"] == {CIDR: block.id}
    assert rig.waf.sets["autoblock-v4-1"] == set()  # not in WAF until its Apply task runs
    assert rig.nacls.denies("acl-a") == []

    # And its Apply task writes the set, then makes it active
    assert rig.run_until_active(block.id).state == "active"
    assert rig.waf.sets["autoblock-v4-1"] == {CIDR}
    applied = rig.store.history(CIDR)[-1]
    assert (applied.event, applied.reason) == ("applied", "denied in WAF IP set autoblock-v4-1")


def test_a_block_in_both_targets_gets_nacl_entries_and_the_set() -> None:
    rig = waf_rig()
    assert rig.waf is not None
    block = rig.open(IP, targets=["nacl", "waf"]).block
    rig.run_until_active(block.id)
    assert rig.store.block(block.id).targets == ["nacl", "waf"]
    assert [d[2] for d in rig.nacls.denies("acl-a")] == [CIDR]
    assert rig.waf.sets["autoblock-v4-1"] == {CIDR}


def test_default_targets_apply_when_the_request_names_none() -> None:
    rig = waf_rig(default_targets="waf")
    block = rig.open(IP).block
    assert (block.targets, block.waf_set) == (["waf"], "autoblock-v4-1")


def test_expiry_and_unblock_take_the_address_out_of_its_set() -> None:
    # Given two active WAF blocks
    rig = waf_rig()
    assert rig.waf is not None
    first = rig.open(IP, targets=["waf"], duration=60).block
    second = rig.open("198.51.100.9", targets=["waf"], duration=3600).block
    for block in (first, second):
        rig.run_until_active(block.id)
    assert rig.waf.sets["autoblock-v4-1"] == {CIDR, "198.51.100.9/32"}

    # When the first expires and the second is unblocked
    rig.clock.advance(60)
    assert rig.lifecycle.expire(first.id).state == "expired"
    assert rig.waf.sets["autoblock-v4-1"] == {"198.51.100.9/32"}
    assert rig.lifecycle.unblock(second.id, "api:test").state == "unblocked"

    # Then the set is empty, and so are its members in the table; the addresses can be blocked again
    assert rig.waf.sets["autoblock-v4-1"] == set()
    assert rig.store.waf_members["autoblock-v4-1"] == {}
    assert rig.store.locks == {}
    assert rig.open(IP, targets=["waf"]).outcome == "created"


def test_a_new_block_goes_to_the_fullest_set_that_still_has_room() -> None:
    # Given set 1 full and set 2 holding some addresses
    rig = waf_rig()
    fill(rig, "autoblock-v4-1", WAF_SET_LIMIT)
    fill(rig, "autoblock-v4-2", 3)
    assert rig.open(IP, targets=["waf"]).block.waf_set == "autoblock-v4-2"

    # And with set 1 holding more than set 2 but not full, set 1 takes the next one
    rig = waf_rig()
    fill(rig, "autoblock-v4-1", 5)
    fill(rig, "autoblock-v4-2", 3)
    assert rig.open(IP, targets=["waf"]).block.waf_set == "autoblock-v4-1"


def test_a_set_that_filled_up_since_it_was_read_sends_the_block_to_the_next() -> None:
    # Given set 1 fills up between the count the request read and its transaction
    rig = waf_rig()
    fill(rig, "autoblock-v4-1", 1)
    rig.store.waf_limit = 1

    # Then the block goes to set 2
    assert rig.open(IP, targets=["waf"]).block.waf_set == "autoblock-v4-2"


def test_every_set_full_with_when_full_reject_refuses_and_records_it() -> None:
    rig = waf_rig()
    fill(rig, "autoblock-v4-1", WAF_SET_LIMIT)
    fill(rig, "autoblock-v4-2", WAF_SET_LIMIT)
    with pytest.raises(CapacityExceeded, match=r"every WAF IP set for IPv4 .* holds 10,000 addresses"):
        rig.open(IP, targets=["waf"])
    assert [e.event for e in rig.store.history(CIDR)] == ["requested", "rejected"]
    assert CIDR not in rig.store.waf_members["autoblock-v4-1"]


def test_every_set_full_with_eviction_ends_the_waf_block_that_ends_first() -> None:
    # Given one WAF set of 10,000 whose soonest-ending active block is ours, and WhenFull evicts
    rig = waf_rig(when_full="evict-soonest-expiring", waf_ip_sets="4:autoblock-v4-1:id-v4-1")
    assert rig.waf is not None
    soon = rig.open("198.51.100.9", targets=["waf"], duration=60).block
    rig.run_until_active(soon.id)
    fill(rig, "autoblock-v4-1", WAF_SET_LIMIT - 1)
    rig.waf.sets["autoblock-v4-1"].add("198.51.100.9/32")

    # When another address is blocked in WAF
    block = rig.open(IP, targets=["waf"]).block

    # Then the soonest-ending block is evicted and the new one takes its place
    assert rig.store.block(soon.id).state == "evicted"
    assert block.evicted == [{"id": soon.id, "ip": "198.51.100.9/32"}]
    assert "198.51.100.9/32" not in rig.waf.sets["autoblock-v4-1"]
    assert rig.store.waf_members["autoblock-v4-1"][CIDR] == block.id


def test_when_full_waf_sends_a_block_to_waf_when_the_nacl_range_is_full() -> None:
    # Given RuleLimit 3 and three blocks holding the range
    rig = waf_rig(when_full="waf")
    assert rig.waf is not None
    for i in range(3):
        rig.run_until_active(rig.open(f"198.51.100.{i + 1}").block.id)

    # When a fourth address is blocked (in the NACLs, the default target)
    block = rig.open(IP).block

    # Then it goes on in WAF only, and its history says why
    assert (block.targets, block.waf_set, block.rules, block.nacl_ids) == (["waf"], "autoblock-v4-1", {}, [])
    rig.run_until_active(block.id)
    assert rig.waf.sets["autoblock-v4-1"] == {CIDR}
    rerouted = next(e for e in rig.store.history(CIDR) if e.event == "rerouted")
    assert rerouted.reason.startswith("no free rule number: acl-a ingress holds 3 of 3 blocks")
    assert rerouted.reason.endswith("WhenFull=waf: blocked in WAF only")
    assert len(rig.nacls.denies("acl-a")) == 3


@pytest.mark.parametrize(
    ("overrides", "request_fields", "message"),
    [
        ({}, {"targets": ["waf"]}, r"this stack has no WAF IP set \(WafScope=NONE\)"),
        (
            {"waf_scope": "REGIONAL", "waf_ip_sets": "4:autoblock-v4-1:id-v4-1"},
            {"ip": "2001:db8::7", "targets": ["waf"]},
            "this stack has no WAF IP set for IPv6 addresses",
        ),
        (
            {"waf_scope": "REGIONAL", "waf_ip_sets": WAF_SETS},
            {"targets": ["waf"], "direction": "egress"},
            "WAF inspects requests to your resources and cannot block egress",
        ),
    ],
)
def test_a_target_the_stack_cannot_serve_is_refused_naming_the_field_and_nothing_is_written(
    overrides: dict[str, object], request_fields: dict[str, object], message: str
) -> None:
    rig = lifecycle(**overrides)
    fields = {"ip": IP, **request_fields}
    with pytest.raises(InvalidRequest, match=message) as refused:
        rig.open(str(fields.pop("ip")), **fields)
    assert refused.value.http_status == 422
    assert refused.value.fields[0]["field"] == "targets"
    assert rig.store.blocks == {} and rig.store.locks == {} and rig.store.history(CIDR) == []


def test_an_egress_finding_with_waf_by_default_still_goes_in_the_nacls() -> None:
    rig = waf_rig(default_targets="waf")
    block = rig.open(IP, direction="egress").block
    assert (block.targets, block.waf_set) == (["nacl"], None)


def test_settings_refuse_waf_targets_without_sets() -> None:
    with pytest.raises(ValueError, match="DefaultTargets names waf but the stack has no WAF IP set"):
        lifecycle(default_targets="nacl,waf")
    with pytest.raises(ValueError, match="WhenFull names waf"):
        lifecycle(when_full="waf")
    with pytest.raises(ValueError, match="is not <family>:<name>:<id>"):
        lifecycle(waf_scope="REGIONAL", waf_ip_sets="5:x:y")


def test_the_sweeper_removes_a_stray_address_restores_a_missing_one_and_reads_no_idle_waf_block() -> None:
    # Given two active WAF blocks, one of whose addresses was removed from the set by hand, and a
    # stray address added to it
    rig = waf_rig()
    assert rig.waf is not None
    kept = rig.open(IP, targets=["waf"], duration=3600).block
    lost = rig.open("198.51.100.9", targets=["waf"], duration=3600).block
    for block in (kept, lost):
        rig.run_until_active(block.id)
    rig.waf.sets["autoblock-v4-1"] = {CIDR, "192.0.2.66/32"}

    # When the sweeper runs
    report = rig.sweeper().sweep()

    # Then the set holds exactly the live blocks' addresses again
    assert rig.waf.sets["autoblock-v4-1"] == {CIDR, "198.51.100.9/32"}
    assert sorted((r.kind, r.cidr) for r in report.repairs) == [
        ("waf_removed", "192.0.2.66/32"),
        ("waf_restored", "198.51.100.9/32"),
    ]
    # And it read no active WAF-only block that is not yet due (they are not in its reads)
    assert report.live_blocks == 0


def test_the_sweeper_releases_an_overdue_waf_block_whose_execution_died() -> None:
    rig = waf_rig()
    assert rig.waf is not None
    block = rig.open(IP, targets=["waf"], duration=60).block
    rig.run_until_active(block.id)
    rig.clock.advance(60 + rig.settings.sweeper_grace_seconds + 1)
    report = rig.sweeper().sweep()
    assert [(r.kind, r.block_id) for r in report.repairs] == [("expired_late", block.id)]
    assert rig.waf.sets["autoblock-v4-1"] == set()
