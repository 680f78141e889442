"""The block's workflow tasks (Apply, Expire, Compensate) on fakes of the ports (``tests.unit.fakes``):
what each leaves in the NACLs and the table, retried or raced."""

from __future__ import annotations

import pytest

from autoblock.errors import NaclQuotaExceeded, TransientAwsError
from autoblock.models import Entry
from tests.unit.fakes import T0, conflict, lifecycle

IP = "203.0.113.7"
CIDR = "203.0.113.7/32"
FOREIGN_ALLOW = Entry("acl-a", 100, False, "allow", "6", "198.51.100.0/24")


# -- apply ----------------------------------------------------------------------------------------


def test_apply_creates_the_entries_of_the_ticket_and_makes_the_block_active() -> None:
    # Given a pending block
    rig = lifecycle()
    block = rig.open(IP).block
    rig.clock.advance(2)

    # When its Apply task runs on the ticket the workflow was started with
    ticket = rig.lifecycle.apply(rig.ticket(block.id))

    # Then each NACL denies the address at the block's number, and the block is active
    assert ticket.state == "active"
    assert rig.nacls.denies("acl-a") == rig.nacls.denies("acl-b") == [("ingress", 100, CIDR)]
    assert rig.store.block(block.id).state == "active"
    applied = rig.store.history(CIDR)[-1]
    assert (applied.event, applied.reason) == ("applied", "denied in acl-a ingress rule 100, acl-b ingress rule 100")
    # and the time it was applied is on the address's offender record (escalation)
    assert rig.store.offenders[CIDR] == [int(T0) + 2]


def test_a_retried_apply_changes_nothing() -> None:
    # Given a block its Apply task made active
    rig = lifecycle()
    block = rig.open(IP).block
    rig.lifecycle.apply(rig.ticket(block.id))
    before = rig.store.snapshot()

    # When the task runs again on the same ticket (a retry after a lost answer)
    ticket = rig.lifecycle.apply(rig.ticket(block.id))

    # Then it answers active; same entries, one applied event, one applied time
    assert ticket.state == "active"
    assert rig.nacls.denies("acl-a") == [("ingress", 100, CIDR)]
    assert rig.store.snapshot() == before
    assert [e for e, _ in rig.store.events(CIDR)] == ["requested", "applied"]


def test_a_foreign_entry_at_the_block_s_number_is_left_alone_and_the_block_moves() -> None:
    # Given a pending block at 100, where someone has since written an allow rule in acl-a
    rig = lifecycle()
    block = rig.open(IP).block
    rig.nacls.add(FOREIGN_ALLOW)

    # When its Apply task runs
    ticket = rig.lifecycle.apply(rig.ticket(block.id))

    # Then the foreign rule is untouched, its number quarantined, and the block denies at the next number
    assert rig.nacls.at("acl-a", 100) == FOREIGN_ALLOW
    assert rig.nacls.denies("acl-a") == [("ingress", 100, "198.51.100.0/24"), ("ingress", 101, CIDR)]
    assert rig.store.held()["acl-a|ingress"] == {100: "foreign", 101: block.id}
    assert (ticket.state, ticket.rules) == ("active", {"acl-a|ingress": 101, "acl-b|ingress": 100})
    assert rig.store.block(block.id).rules == ticket.rules


def test_an_apply_retried_after_moving_off_a_foreign_entry_still_makes_the_block_active() -> None:
    # Given a pending block at 100 where a foreign rule sits, and an Apply whose activation hits a conflict
    rig = lifecycle()
    block = rig.open(IP).block
    rig.nacls.add(FOREIGN_ALLOW)
    rig.store.fail("activate", conflict("activate"))
    with pytest.raises(TransientAwsError):
        rig.lifecycle.apply(rig.ticket(block.id))

    # When the state machine retries Apply with the same ticket (still naming 100)
    ticket = rig.lifecycle.apply(rig.ticket(block.id))

    # Then the block is active at the number it moved to
    assert (ticket.state, ticket.rules["acl-a|ingress"]) == ("active", 101)
    assert rig.nacls.at("acl-a", 100) == FOREIGN_ALLOW


def test_a_block_unblocked_while_its_entries_are_written_leaves_no_entry_behind() -> None:
    # Given a pending block, unblocked by another container just as Apply writes its first entry
    rig = lifecycle()
    block = rig.open(IP).block

    def unblock() -> None:
        rig.another_container().unblock(block.id, "ops")

    rig.nacls.before("deny", unblock)

    # When Apply runs
    ticket = rig.lifecycle.apply(rig.ticket(block.id))

    # Then the entries it wrote after the unblocker looked are removed; the block stays unblocked
    assert ticket.state == "unblocked"
    assert rig.nacls.denies("acl-a") == rig.nacls.denies("acl-b") == []
    assert rig.store.block(block.id).state == "unblocked"
    assert "applied" not in [e for e, _ in rig.store.events(CIDR)]
    assert rig.store.held() == {}


def test_a_nacl_at_its_quota_fails_apply_and_compensation_rejects_the_block() -> None:
    # Given acl-a holding 20 IPv4 ingress rules outside the range
    rig = lifecycle()
    for n in range(1, 21):
        rig.nacls.add(Entry("acl-a", n, False, "allow", "6", f"192.0.2.{n}/32"))
    block = rig.open(IP).block

    # When Apply runs, and the state machine compensates the error it raised
    with pytest.raises(NaclQuotaExceeded) as refused:
        rig.lifecycle.apply(rig.ticket(block.id))
    ended = rig.lifecycle.compensate(block.id, "NaclQuotaExceeded", str(refused.value))

    # Then the block is rejected, nothing of it is left in either NACL or the table
    assert str(refused.value) == "acl-a has reached its quota of IPv4 rules per direction"
    assert (ended.state, rig.store.block(block.id).state) == ("rejected", "rejected")
    assert rig.nacls.denies("acl-b") == []
    assert [r for r in rig.nacls.denies("acl-a") if r[1] >= 100] == []
    assert (rig.store.held(), rig.store.locks) == ({}, {})


# -- expire ---------------------------------------------------------------------------------------


def test_expire_before_the_expiry_returns_the_block_active() -> None:
    # Given an active block of 10 minutes, extended meanwhile
    rig = lifecycle()
    block = rig.open(IP, duration=600).block
    rig.run_until_active(block.id)
    rig.clock.advance(300)
    rig.open(IP, duration=600)

    # When the Wait for its first expiry ends
    rig.clock.advance(300)
    current = rig.lifecycle.expire(block.id)

    # Then it is still active, with its later expiry (the workflow waits again)
    assert (current.state, current.expires_at) == ("active", int(T0) + 900)
    assert rig.nacls.denies("acl-a") == [("ingress", 100, CIDR)]


def test_expire_when_due_removes_the_entries_and_gives_back_numbers_and_lock() -> None:
    # Given an active block at its expiry
    rig = lifecycle()
    block = rig.open(IP, duration=600).block
    rig.run_until_active(block.id)
    rig.clock.advance(600)

    # When Expire runs
    done = rig.lifecycle.expire(block.id)

    # Then its entries are gone, its numbers and the address free, and it ended expired
    assert done.state == "expired"
    assert rig.nacls.denies("acl-a") == rig.nacls.denies("acl-b") == []
    assert (rig.store.held(), rig.store.locks) == ({}, {})
    assert rig.store.events(CIDR)[-1] == ("expired", block.id)
    assert rig.store.block(block.id).ended_at == int(T0) + 600


def test_a_wait_that_ends_up_to_two_seconds_early_sleeps_the_rest_and_expires() -> None:
    # Given an active block, and a Wait that ends 1.5 s before its expiry
    rig = lifecycle()
    block = rig.open(IP, duration=600).block
    rig.run_until_active(block.id)
    rig.clock.advance(598.5)

    # When Expire runs
    done = rig.lifecycle.expire(block.id)

    # Then it sleeps the 1.5 s left (no second Wait) and expires the block
    assert rig.clock.slept == [1.5]
    assert done.state == "expired"
    assert rig.nacls.denies("acl-a") == []


# -- compensate -----------------------------------------------------------------------------------


def test_compensating_a_pending_block_for_a_business_error_rejects_it() -> None:
    # Given a pending block
    rig = lifecycle()
    block = rig.open(IP).block

    # When its execution compensates a CapacityExceeded
    ended = rig.lifecycle.compensate(block.id, "CapacityExceeded", "no room")

    # Then it ends rejected, holding nothing
    assert (ended.state, ended.end_reason) == ("rejected", "CapacityExceeded: no room")
    assert (rig.store.held(), rig.store.locks) == ({}, {})
    assert rig.store.events(CIDR)[-1] == ("rejected", block.id)


def test_compensating_an_active_block_for_any_other_error_fails_it_and_removes_its_entries() -> None:
    # Given an active block
    rig = lifecycle()
    block = rig.open(IP).block
    rig.run_until_active(block.id)

    # When its execution compensates a task timeout
    ended = rig.lifecycle.compensate(block.id, "States.Timeout", "the task timed out")

    # Then it ends failed; its entries, numbers and lock are given back
    assert (ended.state, ended.end_reason) == ("failed", "States.Timeout: the task timed out")
    assert rig.nacls.denies("acl-a") == rig.nacls.denies("acl-b") == []
    assert (rig.store.held(), rig.store.locks) == ({}, {})


def test_compensation_never_takes_over_a_release_another_actor_started() -> None:
    # Given an active block that an unblock has moved to releasing (and not finished yet)
    rig = lifecycle()
    block = rig.open(IP).block
    rig.run_until_active(block.id)
    rig.store.transition(
        block.id, frozenset({"active"}), "releasing", int(T0), ending=("unblocked", "unblocked by ops", "ops")
    )

    # When the execution compensates an error meanwhile
    current = rig.lifecycle.compensate(block.id, "States.TaskFailed", "boom")

    # Then the release is left to its actor: how it is to end is untouched, and so are its entries
    stored = rig.store.block(block.id)
    assert current.state == stored.state == "releasing"
    assert (stored.ending_state, stored.ending_reason, stored.ending_source) == ("unblocked", "unblocked by ops", "ops")
    assert rig.nacls.denies("acl-a") == [("ingress", 100, CIDR)]


def test_a_retried_compensation_resumes_its_own_release() -> None:
    # Given a compensation that moved the block to releasing, then died before finishing it
    rig = lifecycle()
    block = rig.open(IP).block
    rig.run_until_active(block.id)
    rig.store.fail("finish", TransientAwsError("TransactWriteItems finish: ThrottlingException"))
    with pytest.raises(TransientAwsError):
        rig.lifecycle.compensate(block.id, "States.TaskFailed", "boom")
    assert rig.store.block(block.id).state == "releasing"

    # When the compensation is retried
    ended = rig.lifecycle.compensate(block.id, "States.TaskFailed", "boom")

    # Then it finishes the release it started
    assert (ended.state, ended.end_reason) == ("failed", "States.TaskFailed: boom")
    assert rig.store.block(block.id).state == "failed"
    assert (rig.store.held(), rig.store.locks) == ({}, {})
    assert rig.nacls.denies("acl-a") == []
