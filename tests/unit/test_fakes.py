"""The fakes keep their adapters' promises: conditions, all-or-nothing transactions, EC2's answers."""

from __future__ import annotations

import pytest

from autoblock.errors import NaclQuotaExceeded
from autoblock.logic.ports import BlockStore, NaclGateway, WorkflowGateway
from autoblock.models import AddressLocked, Block, Entry, EntryExists, HistoryEvent, SlotTaken, Unchanged
from tests.unit.fakes import T0, MemoryNacls, MemoryStore, RecordingWorkflow

NOW = int(T0)


def _block(block_id: str, cidr: str = "203.0.113.7/32", **rest: object) -> Block:
    fields: dict[str, object] = {
        "id": block_id,
        "cidr": cidr,
        "family": 4,
        "direction": "ingress",
        "nacl_ids": ["acl-a"],
        "state": "pending",
        "created_at": NOW,
        "expires_at": NOW + 600,
        **rest,
    }
    return Block.model_validate(fields)


def _event(block: Block, kind: str = "requested") -> HistoryEvent:
    return HistoryEvent.model_validate(
        {"at": T0, "block_id": block.id, "cidr": block.cidr, "event": kind, "source": "test"}
    )


def test_the_fakes_meet_the_ports() -> None:
    # mypy checks these assignments: no cast, no ignore
    store: BlockStore = MemoryStore()
    nacls: NaclGateway = MemoryNacls(["acl-a"])
    workflow: WorkflowGateway = RecordingWorkflow()
    assert store.live() == []
    assert [e.rule_number for e in nacls.entries(["acl-a"])["acl-a"]] == [32767, 32767]
    assert workflow.status("a" * 32) is None


def test_a_create_refused_for_one_slot_writes_nothing_at_all() -> None:
    # Given number 101 held by another block
    store = MemoryStore()
    store.hold("acl-a|egress", 101, "b" * 32)
    before = store.snapshot()
    block = _block("a" * 32, direction="both", rules={"acl-a|ingress": 100, "acl-a|egress": 101})

    # When a block asking for 100 and 101 is created
    with pytest.raises(SlotTaken) as taken:
        store.create(block, [_event(block)])

    # Then the transaction names the number, and neither the block, its lock, 100 nor its event exist
    assert (taken.value.key, taken.value.number) == ("acl-a|egress", 101)
    assert store.snapshot() == before


def test_a_create_for_a_locked_address_is_refused_before_its_slots() -> None:
    store = MemoryStore()
    first = _block("a" * 32, rules={"acl-a|ingress": 100})
    store.create(first, [_event(first)])
    second = _block("b" * 32, rules={"acl-a|ingress": 100})

    with pytest.raises(AddressLocked):
        store.create(second, [_event(second)])


def test_a_caller_changing_a_block_it_read_does_not_change_the_table() -> None:
    store = MemoryStore()
    block = _block("a" * 32)
    store.create(block, [])

    block.rules["acl-a|ingress"] = 100
    read = store.get(block.id)
    assert read is not None
    read.state = "active"

    assert store.block(block.id).rules == {}
    assert store.block(block.id).state == "pending"


def test_take_slot_on_a_block_that_is_no_longer_pending_raises_unchanged_with_it() -> None:
    store = MemoryStore()
    block = _block("a" * 32)
    store.create(block, [])
    store.transition(block.id, frozenset({"pending"}), "releasing", NOW)

    with pytest.raises(Unchanged) as unchanged:
        store.take_slot(block, "acl-a|ingress", 100, NOW)

    assert unchanged.value.current is not None and unchanged.value.current.state == "releasing"
    assert store.held() == {}


def test_finish_gives_back_only_what_the_block_still_holds() -> None:
    # Given a releasing block whose number 100 a sweep quarantined meanwhile
    store = MemoryStore()
    block = _block("a" * 32, rules={"acl-a|ingress": 100, "acl-a|egress": 100}, direction="both")
    store.create(block, [])
    store.hold("acl-a|ingress", 100, "foreign")
    releasing = store.transition(block.id, frozenset({"pending"}), "releasing", NOW, ending=("failed", "x", None))

    # When it is finished
    store.finish(releasing, "failed", "x", NOW, _event(block, "failed"))

    # Then its own number and lock are given back, the quarantine stays
    assert store.held() == {"acl-a|ingress": {100: "foreign"}}
    assert store.locks == {}
    assert store.block(block.id).ending_state is None


def test_an_ec2_nacl_refuses_a_taken_number_and_a_21st_rule_of_one_direction_and_family() -> None:
    nacls = MemoryNacls(["acl-a"])
    for n in range(1, 21):
        nacls.deny("acl-a", n, False, f"192.0.2.{n}/32", 4)

    with pytest.raises(EntryExists) as exists:
        nacls.deny("acl-a", 1, False, "198.51.100.1/32", 4)
    with pytest.raises(NaclQuotaExceeded):
        nacls.deny("acl-a", 100, False, "198.51.100.1/32", 4)
    nacls.deny("acl-a", 100, True, "198.51.100.1/32", 4)  # the other direction has room
    nacls.deny("acl-a", 101, False, "2001:db8::1/128", 6)  # and so has the other family

    assert exists.value.entry == Entry("acl-a", 1, False, "deny", "-1", "192.0.2.1/32")
    assert nacls.at("acl-a", 32767) is not None  # EC2's default rule is always there
