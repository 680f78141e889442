"""WAF IP sets as a block target on the emulator: the real handlers, the real workflow and moto's
WAFv2 (with the emulator's limits: 10,000 addresses per set, one update per second). What a user
would check: the IP sets' contents, the block as the API shows it, the table's items."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from autoblock.dal.items import LIVE
from autoblock.dal.table import BlockTable
from autoblock.handlers import sweeper, wiring
from autoblock.models import Block, BlockRequest
from autoblock_local import emulator
from autoblock_local.emulator import REGION, FakeLambdaContext, Stack, waf_unpaced, wait_until
from autoblock_local.invoke import call, event, settled
from tests.integration.conftest import TOKEN
from tests.support.faults import Faults

IP, CIDR = "203.0.113.7", "203.0.113.7/32"


@pytest.fixture
def waf(deploy: Callable[..., Stack]) -> Stack:
    return deploy(WafScope="REGIONAL", WafIpSetsPerFamily=2)


def ip_sets() -> dict[str, dict[str, Any]]:
    """The stack's IP sets as WAF holds them: name → {id, addresses}."""
    wafv2 = boto3.client("wafv2", region_name=REGION)
    found = {}
    for summary in wafv2.list_ip_sets(Scope="REGIONAL")["IPSets"]:
        got = wafv2.get_ip_set(Name=summary["Name"], Scope="REGIONAL", Id=summary["Id"])["IPSet"]
        found[summary["Name"]] = {"id": summary["Id"], "addresses": sorted(got["Addresses"])}
    return found


def held(name: str = "autoblock-v4-1") -> list[str]:
    return list(ip_sets()[name]["addresses"])


def members(stack: Stack, name: str = "autoblock-v4-1") -> list[str]:
    return sorted(str(i["sk"]) for i in stack.items(f"WAFSET#{name}") if i["sk"] != "#SET")


def sweep() -> dict[str, Any]:
    return sweeper.lambda_handler(event("schedule_sweep.json"), FakeLambdaContext(function_name="SweeperFunction"))


def test_the_stack_has_two_sets_per_family_and_they_start_empty(waf: Stack) -> None:
    sets = ip_sets()
    assert sorted(sets) == ["autoblock-v4-1", "autoblock-v4-2", "autoblock-v6-1", "autoblock-v6-2"]
    assert all(s["addresses"] == [] for s in sets.values())


def test_a_waf_block_is_in_the_set_once_active_and_gone_after_unblock(waf: Stack) -> None:
    # When an address is blocked in WAF
    status, body = call("api_create_block.json", TOKEN, body={"ip": IP, "targets": ["waf"]})
    assert status == 202, body
    assert (body["targets"], body["rules"], body["waf"]["ip_set"]) == (["waf"], [], "autoblock-v4-1")

    # Then once active, the set holds it and no NACL entry was written
    shown = settled(body["id"])
    assert (shown["state"], shown["waf"]["state"]) == ("active", "applied")
    assert held() == [CIDR]
    assert all(waf.managed(n) == [] for n in waf.nacl_ids)

    # When it is unblocked, the set no longer holds it, nor does the table
    status, body = call("api_delete_block.json", TOKEN, block_id=body["id"])
    assert (status, body["state"], body["waf"]["state"]) == (200, "unblocked", "removed")
    assert held() == []
    assert members(waf) == []


def test_a_waf_block_expires_out_of_the_set(waf: Stack) -> None:
    # 10 s: long enough to be seen in the set on a busy machine (an update leaves out a due address)
    status, body = call("api_create_block.json", TOKEN, body={"ip": IP, "targets": ["nacl", "waf"], "duration": 10})
    assert status == 202, body
    assert settled(body["id"])["state"] == "active"
    assert held() == [CIDR]
    assert [c for _, _, c in waf.managed(waf.nacl_ids[0])] == [CIDR]

    wait_until(lambda: settled(body["id"])["state"] == "expired", 30, "not expired")

    assert held() == []
    assert waf.managed(waf.nacl_ids[0]) == []


def due_but_not_released(stack: Stack, ip: str) -> dict[str, Any]:
    """A WAF block whose expiry has passed while its release has not run (its execution stopped in
    the Wait, as a release that has not been reached yet)."""
    status, body = call("api_create_block.json", TOKEN, body={"ip": ip, "targets": ["waf"], "duration": 2})
    assert status == 202, body
    assert settled(body["id"])["state"] == "active"
    stack.sfn.stop_execution(executionArn=stack.execution_arn(body["id"]))
    assert stack.finished(stack.execution_arn(body["id"]))["status"] == "ABORTED"
    due = int(stack.block(body["id"])["expires_at"])
    time.sleep(max(0.0, due - time.time()) + 0.05)
    return body


def test_an_update_leaves_out_an_address_that_is_due_before_its_release_runs(waf: Stack) -> None:
    # Given a WAF block that is due, still active in the table (its release has not run)
    due = due_but_not_released(waf, IP)

    # When another address is blocked in the same set
    status, other = call("api_create_block.json", TOKEN, body={"ip": "203.0.113.8", "targets": ["waf"]})
    assert status == 202, other
    assert settled(other["id"])["state"] == "active"

    # Then the update that added it left the due address out, though the table still lists it
    assert held() == ["203.0.113.8/32"]
    assert waf.block(due["id"])["state"] == "active"
    assert members(waf) == [CIDR, "203.0.113.8/32"]


def test_a_writer_that_reads_ahead_of_its_turn_leaves_out_what_is_due_by_then_and_never_sends_early(
    waf: Stack,
) -> None:
    # Given a WAF block (its release not reached) and the stack's next update turn 0.3 s after its expiry
    status, body = call("api_create_block.json", TOKEN, body={"ip": IP, "targets": ["waf"], "duration": 2})
    assert status == 202 and settled(body["id"])["state"] == "active", body
    waf.sfn.stop_execution(executionArn=waf.execution_arn(body["id"]))
    due = int(waf.block(body["id"])["expires_at"])
    waf.ddb.Table(waf.table_name).put_item(Item={"pk": "WAFRATE", "sk": "WAFRATE", "next_at": due * 1000 + 300})

    # When another address is blocked in the same set (its writer may take that turn up to 0.7 s early)
    status, other = call("api_create_block.json", TOKEN, body={"ip": "203.0.113.8", "targets": ["waf"]})
    assert status == 202 and settled(other["id"])["state"] == "active", other

    # Then its update left the due address out, and no update took it out before it was due
    assert held() == ["203.0.113.8/32"]
    updates = [w for w in emulator.WAF_WRITES if w.action == "UpdateIPSet" and w.outcome == "ok"]
    with_other = [w for w in updates if "203.0.113.8/32" in w.addresses]
    assert with_other and CIDR not in with_other[0].addresses
    assert all(CIDR in w.addresses for w in updates if w.done < due)
    assert with_other[0].done >= due + 0.3


def test_a_writer_that_took_its_turn_early_and_sent_nothing_gives_the_turn_back_as_it_was(waf: Stack) -> None:
    # Given the stack's next update turn 1.5 s ahead, and a set whose generation moved while its
    # contents did not (a writer taking the turn early finds the set right already)
    table = waf.ddb.Table(waf.table_name)
    turn = int(time.time() * 1000) + 1500
    table.put_item(Item={"pk": "WAFRATE", "sk": "WAFRATE", "next_at": turn})
    table.update_item(
        Key={"pk": "WAFSET#autoblock-v4-1", "sk": "#SET"},
        UpdateExpression="ADD gen :one",
        ExpressionAttributeValues={":one": 1},
    )

    # When that set is flushed
    sets = wiring.lifecycle().ctx.waf
    assert sets is not None
    sets.flush("autoblock-v4-1")

    # Then no update was sent, and the turn is where it was: no sooner for the next writer
    assert not [w for w in emulator.WAF_WRITES if w.paced]
    assert table.get_item(Key={"pk": "WAFRATE", "sk": "WAFRATE"})["Item"]["next_at"] >= turn


def test_a_block_extended_just_before_its_expiry_is_answered_only_once_no_update_leaves_it_out(waf: Stack) -> None:
    # Given a WAF block (its release not reached), the next update turn 0.3 s after its expiry, and
    # another block whose writer takes that turn early and reads the members as of the turn
    status, body = call("api_create_block.json", TOKEN, body={"ip": IP, "targets": ["waf"], "duration": 2})
    assert status == 202 and settled(body["id"])["state"] == "active", body
    waf.sfn.stop_execution(executionArn=waf.execution_arn(body["id"]))
    due = int(waf.block(body["id"])["expires_at"])
    waf.ddb.Table(waf.table_name).put_item(Item={"pk": "WAFRATE", "sk": "WAFRATE", "next_at": due * 1000 + 300})
    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(call, "api_create_block.json", TOKEN, body={"ip": "203.0.113.8", "targets": ["waf"]})

        # When the block is extended 0.2 s before it is due
        time.sleep(max(0.0, due - 0.2 - time.time()))
        status, extended = call("api_create_block.json", TOKEN, body={"ip": IP, "targets": ["waf"], "duration": 600})
        answered = time.time()
        assert (status, extended["id"]) == (200, body["id"]), extended
        status, second = other.result()
        assert status == 202 and settled(second["id"])["state"] == "active", second

    # Then from the API's answer on, every update holds it
    assert held() == [CIDR, "203.0.113.8/32"]
    after = [w for w in emulator.WAF_WRITES if w.action == "UpdateIPSet" and w.outcome == "ok" and w.done > answered]
    assert all(CIDR in w.addresses for w in after)


def test_a_block_extended_after_its_expiry_passed_is_put_back_in_its_set(waf: Stack) -> None:
    # Given a due block left out of its set by an update
    due = due_but_not_released(waf, IP)
    status, other = call("api_create_block.json", TOKEN, body={"ip": "203.0.113.8", "targets": ["waf"]})
    assert status == 202 and settled(other["id"])["state"] == "active"
    assert held() == ["203.0.113.8/32"]

    # When its address is blocked again (the live block is extended)
    status, body = call("api_create_block.json", TOKEN, body={"ip": IP, "targets": ["waf"], "duration": 600})
    assert status == 200, body
    assert body["id"] == due["id"]

    # Then by the time the API answers, the set holds it again; its member moved with the block
    assert held() == [CIDR, "203.0.113.8/32"]
    member = next(i for i in waf.items("WAFSET#autoblock-v4-1") if i["sk"] == CIDR)
    assert member["expires_at"] == waf.block(due["id"])["expires_at"] > time.time() + 500


def test_a_block_made_active_while_blocks_are_listed_is_listed_once(
    waf: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a WAF block registered, not yet applied (pending: the live index's LIVE partition)
    block = wiring.lifecycle().registration.register(BlockRequest(ip=IP, targets=["waf"]), source="test").block
    read = BlockTable._live

    def live_then_applied(self: BlockTable, partition: str, before: int | None = None) -> list[Block]:
        found = read(self, partition, before)
        if partition == LIVE:  # it becomes active (LIVE#WAF) before the other partition is read
            waf.start(block.id)
            wait_until(lambda: waf.block(block.id)["state"] == "active", 30, "not active")
        return found

    monkeypatch.setattr(BlockTable, "_live", live_then_applied)

    # When the blocks are listed meanwhile
    status, body = call("api_list_blocks.json", TOKEN)

    # Then it is listed once, as it is now
    assert status == 200, body
    assert [(b["id"], b["state"]) for b in body["blocks"]] == [(block.id, "active")]


def test_a_burst_of_blocks_coalesces_into_few_updates_and_the_set_holds_exactly_them(waf: Stack, fault: Faults) -> None:
    # When 60 addresses are blocked in WAF at once
    addresses = [f"198.51.100.{i + 1}" for i in range(60)]
    with fault.counting("wafv2", "UpdateIPSet") as updates:

        def block(ip: str) -> str:
            status, body = call("api_create_block.json", TOKEN, body={"ip": ip, "targets": ["waf"]})
            assert status == 202, body
            return str(body["id"])

        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(block, addresses))
        assert all(settled(i, timeout=60)["state"] == "active" for i in ids)

    # Then the set holds exactly those addresses, written in far fewer updates than blocks
    assert held() == sorted(f"{a}/32" for a in addresses)
    assert members(waf) == held()
    assert 1 <= updates.count < len(addresses) // 2
    # And GET /status shows each set's fill
    status, body = call("api_status.json", TOKEN)
    assert status == 200, body
    assert body["waf_scope"] == "REGIONAL"
    assert [(s["name"], s["used"], s["limit"]) for s in body["waf_sets"]] == [
        ("autoblock-v4-1", 60, 10000),
        ("autoblock-v4-2", 0, 10000),
        ("autoblock-v6-1", 0, 10000),
        ("autoblock-v6-2", 0, 10000),
    ]


def test_a_second_writer_racing_ours_loses_nothing_and_keeps_nothing_foreign(waf: Stack, fault: Faults) -> None:
    # Given another writer that changes the set between our read and our update (adding its own address)
    with fault.racing_writer(waf, "autoblock-v4-1") as race:
        # When an address is blocked in WAF
        status, body = call("api_create_block.json", TOKEN, body={"ip": IP, "targets": ["waf"]})
        assert status == 202, body
        assert settled(body["id"])["state"] == "active"

    # Then our update met the lock conflict, read the table and the set again, and the set holds our
    # block's address only: nothing lost, nothing foreign kept
    assert race.updates == [("autoblock-v4-1", "198.51.100.77/32")]
    assert held() == [CIDR]


def test_the_sweeper_restores_a_lost_address_removes_a_stray_and_leaves_other_sets_alone(waf: Stack) -> None:
    # Given an active WAF block, a set someone edited by hand, and an IP set that is not ours
    status, body = call("api_create_block.json", TOKEN, body={"ip": IP, "targets": ["waf"]})
    assert status == 202, body
    assert settled(body["id"])["state"] == "active"
    wafv2 = boto3.client("wafv2", region_name=REGION)
    with waf_unpaced():
        theirs = wafv2.create_ip_set(
            Name="someone-elses", Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=["192.0.2.1/32"]
        )["Summary"]
    waf.foreign_waf_update("autoblock-v4-1", add=("192.0.2.66/32",), remove=(CIDR,))
    assert held() == ["192.0.2.66/32"]

    # When the sweeper runs
    report = sweep()

    # Then our set holds exactly the live block's address, and the other set is untouched
    assert held() == [CIDR]
    assert report["repairs"].get("waf_removed") == 1 and report["repairs"].get("waf_restored") == 1
    other = wafv2.get_ip_set(Name="someone-elses", Scope="REGIONAL", Id=theirs["Id"])["IPSet"]
    assert other["Addresses"] == ["192.0.2.1/32"]


def test_a_right_set_costs_the_sweeper_no_member_read(waf: Stack, fault: Faults) -> None:
    status, body = call("api_create_block.json", TOKEN, body={"ip": IP, "targets": ["waf"]})
    assert status == 202, body
    assert settled(body["id"])["state"] == "active"

    def members_query(request: dict[str, Any]) -> bool:
        return "WAFSET#" in json.dumps(request.get("ExpressionAttributeValues", {}))

    with (
        fault.counting("dynamodb", "Query", when=members_query) as queries,
        fault.counting("wafv2", "UpdateIPSet") as updates,
    ):
        report = sweep()
    assert "waf_removed" not in report["repairs"] and "waf_restored" not in report["repairs"]
    assert (queries.count, updates.count) == (0, 0)
    # And it reports each set's fill (published as WafSetAddresses, the dashboard's WAF widget)
    assert report["waf_sets"] == {"autoblock-v4-1": 1, "autoblock-v4-2": 0, "autoblock-v6-1": 0, "autoblock-v6-2": 0}


def test_when_full_waf_blocks_in_waf_only_and_the_api_says_so(deploy: Callable[..., Stack]) -> None:
    stack = deploy(WafScope="REGIONAL", RuleLimit=1, WhenFull="waf")
    first = call("api_create_block.json", TOKEN, body={"ip": "198.51.100.1"})[1]
    assert settled(first["id"])["state"] == "active"

    status, body = call("api_create_block.json", TOKEN, body={"ip": IP})

    assert status == 202, body
    assert (body["targets"], body["rules"]) == (["waf"], [])
    assert settled(body["id"])["state"] == "active"
    assert held() == [CIDR]
    status, history = call("api_block_history.json", TOKEN, block_id=body["id"])
    assert status == 200, history
    rerouted = [e for e in history["events"] if e["event"] == "rerouted"]
    assert len(rerouted) == 1 and rerouted[0]["reason"].endswith("WhenFull=waf: blocked in WAF only")
    assert [c for _, _, c in stack.managed(stack.nacl_ids[0])] == ["198.51.100.1/32"]


@pytest.mark.parametrize(
    ("parameters", "body", "message"),
    [
        ({}, {"ip": IP, "targets": ["waf"]}, "this stack has no WAF IP set (WafScope=NONE)"),
        ({"WafScope": "REGIONAL"}, {"ip": IP, "targets": ["waf"], "direction": "egress"}, "cannot block egress"),
        ({"WafScope": "REGIONAL"}, {"ip": IP, "targets": ["firewall"]}, "Input should be 'nacl' or 'waf'"),
        ({"WafScope": "REGIONAL"}, {"ip": IP, "targets": ["waf", "waf"]}, "each target once"),
        ({"WafScope": "REGIONAL"}, {"ip": "198.51.0.0/16", "targets": ["waf"]}, "MinPrefixLengthV4"),
    ],
)
def test_bad_targets_are_refused_with_a_clear_4xx_and_nothing_written(
    deploy: Callable[..., Stack], parameters: dict[str, str], body: dict[str, Any], message: str
) -> None:
    stack = deploy(**parameters)
    status, answer = call("api_create_block.json", TOKEN, body=body)
    assert 400 <= status < 500, answer
    assert message in json.dumps(answer)
    assert stack.items("BLOCK#") == [] and stack.items("WAFSET#") == []


def test_a_full_set_sends_blocks_to_the_next_and_every_set_full_is_refused(waf: Stack) -> None:
    # Given the first IPv4 set holds 10,000 addresses (its summary says so)
    table = waf.ddb.Table(waf.table_name)
    table.put_item(Item={"pk": "WAFSET#autoblock-v4-1", "sk": "#SET", "count": 10_000, "gen": 0, "applied_gen": 0})

    # When an address is blocked in WAF, it goes to the second set
    status, body = call("api_create_block.json", TOKEN, body={"ip": IP, "targets": ["waf"]})
    assert (status, body["waf"]["ip_set"]) == (202, "autoblock-v4-2"), body
    assert settled(body["id"])["state"] == "active"
    assert held("autoblock-v4-2") == [CIDR]

    # And with the second set full too, the next one is refused (WhenFull=reject) and nothing is written
    table.put_item(Item={"pk": "WAFSET#autoblock-v4-2", "sk": "#SET", "count": 10_000, "gen": 0, "applied_gen": 0})
    status, body = call("api_create_block.json", TOKEN, body={"ip": "198.51.100.5", "targets": ["waf"]})
    assert status == 503, body
    assert "every WAF IP set for IPv4" in body["message"]
    assert members(waf, "autoblock-v4-1") == [] and members(waf, "autoblock-v4-2") == [CIDR]
