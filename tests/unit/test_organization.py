"""Organization mode on fakes of the ports: a block spans the configured NACLs of several accounts
and Regions, each with its own rule numbers and address lock; an account that cannot be reached is
given up on its own; a finding blocks only where it came from."""

from __future__ import annotations

import pytest

from autoblock.errors import InvalidRequest, MemberUnreachable
from autoblock.logic.guardduty import Extraction, Target
from autoblock.logic.intake import handle_finding
from autoblock.models import BlockRequest, BlockView
from tests.unit.fakes import lifecycle

HOME = ("123456789012", "us-east-1")
A, B = "111111111111", "222222222222"
A1, A2, B1 = f"{A}:us-east-1:acl-a1", f"{A}:eu-west-1:acl-a2", f"{B}:us-east-1:acl-b1"
ORG = {
    "nacl_ids": ("acl-home",),
    "member_nacl_ids": f"{A1},{A2},{B1}",
    "home_account_id": HOME[0],
    "home_region": HOME[1],
}
IP, CIDR = "203.0.113.7", "203.0.113.7/32"


def finding(account: str, region: str, subnets: tuple[str, ...] = ()) -> Extraction:
    target = Target(CIDR, "ingress", "Recon:EC2/PortProbeUnprotectedPort")
    return Extraction(
        finding_id="f1", severity=5.0, targets=[target], account_id=account, region=region, subnet_ids=subnets
    )


def test_a_triple_of_the_stacks_own_account_and_region_is_named_by_its_id() -> None:
    rig = lifecycle(**{**ORG, "member_nacl_ids": f"{HOME[0]}:{HOME[1]}:acl-0123456789abcdef0,{A1}"})
    assert rig.lifecycle.settings.nacl_refs == ("acl-home", "acl-0123456789abcdef0", A1)


def test_a_malformed_triple_is_refused_with_the_expected_shape() -> None:
    with pytest.raises(ValueError, match="is not account:region:acl-id"):
        lifecycle(**{**ORG, "member_nacl_ids": "1111:us-east-1:acl-a1"})


def test_an_api_block_lands_in_every_configured_nacl_with_one_lock_per_account_and_region() -> None:
    # Given organization mode with the own NACL and three members' NACLs
    rig = lifecycle(**ORG)

    # When an address is blocked with no accounts or regions named
    opened = rig.open(IP)
    rig.run_until_active(opened.block.id)

    # Then each NACL has its deny entry, and each location its own lock
    for ref in ("acl-home", A1, A2, B1):
        assert rig.nacls.denies(ref) == [("ingress", 100, CIDR)]
    assert rig.store.locks == {
        CIDR: opened.block.id,
        f"{CIDR}@{A}:us-east-1": opened.block.id,
        f"{CIDR}@{A}:eu-west-1": opened.block.id,
        f"{CIDR}@{B}:us-east-1": opened.block.id,
    }
    # and the API shows where each rule is
    view = BlockView.of(rig.store.block(opened.block.id), HOME)
    places = sorted((r.account, r.region, r.nacl_id) for r in view.rules)
    assert places == [
        (A, "eu-west-1", "acl-a2"),
        (A, "us-east-1", "acl-a1"),
        (HOME[0], HOME[1], "acl-home"),
        (B, "us-east-1", "acl-b1"),
    ]


def test_accounts_and_regions_narrow_a_request() -> None:
    rig = lifecycle(**ORG)
    opened = rig.open(IP, accounts=[A], regions=["eu-west-1"])
    assert rig.store.block(opened.block.id).nacl_ids == [A2]
    assert set(rig.store.block(opened.block.id).rules) == {f"{A2}|ingress"}


def test_an_account_that_is_not_configured_is_refused_naming_the_field_and_nothing_is_written() -> None:
    rig = lifecycle(**ORG)
    before = rig.store.snapshot()
    with pytest.raises(InvalidRequest) as refused:
        rig.open(IP, accounts=["333333333333"])
    assert refused.value.fields[0]["field"] == "accounts"
    assert "333333333333" in str(refused.value)
    assert rig.store.snapshot() == before


def test_a_member_whose_role_refuses_is_given_up_alone_and_the_others_are_applied() -> None:
    # Given member B's role is gone
    rig = lifecycle(**ORG)
    rig.nacls.unreachable[f"{B}:us-east-1"] = "cannot assume arn:aws:iam::222222222222:role/autoblock-member"
    opened = rig.open(IP)

    # When the workflow applies the block
    ticket = rig.run_until_active(opened.block.id)

    # Then it is active everywhere else, and B is recorded failed with the reason
    block = rig.store.block(opened.block.id)
    assert ticket.state == block.state == "active"
    assert set(block.rules) == {"acl-home|ingress", f"{A1}|ingress", f"{A2}|ingress"}
    assert block.failures == {f"{B}:us-east-1": "cannot assume arn:aws:iam::222222222222:role/autoblock-member"}
    assert f"{B1}|ingress" not in rig.store.held()
    assert f"{CIDR}@{B}:us-east-1" not in rig.store.locks
    assert [e for e, _ in rig.store.events(CIDR)] == ["requested", "failed", "applied"]
    failed = rig.store.history(CIDR)[1]
    assert failed.reason.startswith(f"not blocked in account {B} in us-east-1: cannot assume")
    view = BlockView.of(block, HOME)
    assert [(f.account, f.region) for f in view.failures] == [(B, "us-east-1")]

    # and unblocking it later ends it cleanly, holding nothing anywhere
    rig.lifecycle.unblock(block.id, "test")
    assert (rig.store.held(), rig.store.locks) == ({}, {})
    assert all(rig.nacls.denies(ref) == [] for ref in ("acl-home", A1, A2))


def test_a_block_that_can_be_applied_nowhere_fails() -> None:
    rig = lifecycle(**{**ORG, "nacl_ids": ()})
    for location in (f"{A}:us-east-1", f"{A}:eu-west-1", f"{B}:us-east-1"):
        rig.nacls.unreachable[location] = "AccessDenied"
    opened = rig.open(IP)
    with pytest.raises(MemberUnreachable):
        rig.run_until_active(opened.block.id)
    # the workflow's Catch compensates: nothing is left held
    rig.lifecycle.compensate(opened.block.id, "MemberUnreachable", "AccessDenied")
    assert rig.store.block(opened.block.id).state == "failed"
    assert (rig.store.held(), rig.store.locks) == ({}, {})


def test_a_release_that_cannot_reach_a_member_says_what_was_left_there() -> None:
    rig = lifecycle(**ORG)
    opened = rig.open(IP)
    rig.run_until_active(opened.block.id)
    rig.nacls.unreachable[f"{A}:eu-west-1"] = "AccessDenied"

    done = rig.lifecycle.unblock(opened.block.id, "test")

    assert done.state == "unblocked"
    assert f"entries left in account {A} in eu-west-1 (AccessDenied)" in (done.end_reason or "")
    assert rig.nacls.denies(A2) == [("ingress", 100, CIDR)]  # left for the sweeper
    assert all(rig.nacls.denies(ref) == [] for ref in ("acl-home", A1, B1))


def test_a_request_for_every_account_extends_the_block_an_account_has_and_creates_one_for_the_rest() -> None:
    # Given a finding blocked the address in member A's us-east-1 only
    rig = lifecycle(**ORG)
    first = rig.lifecycle.open(BlockRequest(ip=IP, duration=600), "guardduty:f0", [A1])

    # When the operator blocks it everywhere
    opened = rig.open(IP, duration=7200)

    # Then A's block is extended, and a new block covers every other account and Region
    assert opened.outcome == "created"
    assert [b.id for b in opened.others] == [first.block.id]
    assert rig.store.block(first.block.id).nacl_ids == [A1]
    assert sorted(rig.store.block(opened.block.id).nacl_ids) == sorted(["acl-home", A2, B1])
    assert rig.store.block(first.block.id).expires_at == rig.store.block(opened.block.id).expires_at


def test_a_finding_blocks_only_in_the_account_and_region_it_came_from() -> None:
    rig = lifecycle(**ORG)
    outcome = handle_finding(finding(A, "eu-west-1"), rig.lifecycle)
    (created,) = outcome.created
    assert rig.store.block(created["block_id"]).nacl_ids == [A2]


def test_a_finding_from_an_account_that_is_not_configured_is_skipped_never_blocked_here() -> None:
    rig = lifecycle(**ORG)
    before = rig.store.snapshot()
    outcome = handle_finding(finding("333333333333", "us-east-1"), rig.lifecycle)
    assert outcome.created == []
    assert outcome.skipped == [
        {
            "address": CIDR,
            "reason": "account 333333333333 in us-east-1 is not configured in MemberNetworkAclIds; "
            "not blocked anywhere else",
        }
    ]
    assert rig.store.snapshot() == before


def test_nacl_from_finding_adds_the_tagged_nacls_of_the_subnets_and_records_the_untagged_ones() -> None:
    # Given member A's subnet is associated with a tagged and an untagged NACL
    rig = lifecycle(**ORG, nacl_from_finding=True)
    tagged, untagged = f"{A}:us-east-1:acl-tagged", f"{A}:us-east-1:acl-untagged"
    rig.nacls.acls[tagged] = {}
    rig.nacls.subnets[(f"{A}:us-east-1", "subnet-1")] = [(tagged, True), (untagged, False)]

    # When a finding on an instance in that subnet arrives
    outcome = handle_finding(finding(A, "us-east-1", ("subnet-1",)), rig.lifecycle)

    # Then the block goes in the configured NACL and the tagged one; the untagged one is never written
    (created,) = outcome.created
    assert rig.store.block(created["block_id"]).nacl_ids == [A1, tagged]
    assert outcome.nacls_skipped == [{"nacl": untagged, "reason": "not tagged autoblock:managed=true"}]


def test_the_sweeper_leaves_an_unreachable_member_as_it_is_and_repairs_the_others() -> None:
    # Given an active block, an entry removed by hand in member A, and member B unreachable
    rig = lifecycle(**ORG)
    opened = rig.open(IP)
    rig.run_until_active(opened.block.id)
    rig.nacls.acls[A1].pop((False, 100))
    rig.nacls.unreachable[f"{B}:us-east-1"] = "AccessDenied"

    report = rig.sweeper().sweep()

    kinds = report.counts()
    assert kinds.get("reapplied") == 1 and kinds.get("unreachable") == 1
    assert rig.nacls.denies(A1) == [("ingress", 100, CIDR)]
    assert rig.store.held()[f"{B1}|ingress"] == {100: opened.block.id}  # B's number stays held
