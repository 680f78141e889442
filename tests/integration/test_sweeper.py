"""The sweeper: whatever failed, after one sweep the managed range and the live blocks agree."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import boto3
import pytest

from autoblock.handlers import sweeper, wiring
from autoblock.models import BlockRequest
from autoblock_local.emulator import FakeLambdaContext
from autoblock_local.invoke import call, event, settled
from tests.integration.conftest import TOKEN, Faults, Stack, wait_until
from tests.support.table import ItemCounter, write_history


@pytest.fixture
def swept(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The stack, with no grace period: the sweeper acts on anything overdue at once."""
    monkeypatch.setenv("SWEEPER_GRACE_SECONDS", "0")
    wiring.reset()
    return stack


def sweep() -> dict[str, Any]:
    return sweeper.lambda_handler(event("schedule_sweep.json"), FakeLambdaContext(function_name="SweeperFunction"))


def block(ip: str, duration: int = 600, direction: str = "ingress") -> dict[str, Any]:
    status, body = call("api_create_block.json", TOKEN, body={"ip": ip, "duration": duration, "direction": direction})
    assert status == 202, body
    body = settled(body["id"])
    assert body["state"] == "active"
    return body


def agree(stack: Stack) -> None:
    """The managed range holds exactly the entries of the active blocks; nothing foreign changed."""
    expected = set()
    for item in stack.items("BLOCK#"):
        if item["state"] == "active":
            for key, number in item["rules"].items():
                nacl_id, direction = key.split("|")
                expected.add((nacl_id, int(number), direction == "egress", item["cidr"]))
    quarantined = {
        (str(s["pk"])[5:].split("|")[0], int(s["sk"]), str(s["pk"]).endswith("|egress"))
        for s in stack.items("SLOT#")
        if s["block_id"] == "foreign"
    }
    actual = {
        (nacl_id, number, egress, cidr)
        for nacl_id in stack.nacl_ids
        for number, egress, cidr in stack.managed(nacl_id)
        if (nacl_id, number, egress) not in quarantined
    }
    assert actual == expected
    for nacl_id in stack.nacl_ids:
        assert stack.foreign(nacl_id) == stack.baseline[nacl_id]


def add_entry(stack: Stack, number: int, cidr: str, action: str = "deny", egress: bool = False, **extra: Any) -> None:
    stack.ec2.create_network_acl_entry(
        NetworkAclId=stack.nacl_ids[0],
        RuleNumber=number,
        Protocol=extra.pop("Protocol", "-1"),
        RuleAction=action,
        Egress=egress,
        CidrBlock=cidr,
        **extra,
    )


def test_orphans_are_removed_and_foreign_rules_in_the_range_left_alone(swept: Stack) -> None:
    # Given: a deny-all nobody owns (a crashed execution, a manual copy), and two rules autoblock
    # could never have written, all inside the managed range 10-14
    nacl = swept.nacl_ids[0]
    add_entry(swept, 12, "198.51.100.12/32")
    add_entry(swept, 13, "192.0.2.0/24", action="allow")
    add_entry(swept, 14, "192.0.2.14/32", egress=True, Protocol="6", PortRange={"From": 443, "To": 443})

    summary = sweep()

    assert summary["repairs"] == {"orphan_removed": 1, "foreign_quarantined": 2}
    assert swept.managed(nacl) == [(13, False, "192.0.2.0/24"), (14, True, "192.0.2.14/32")]
    assert sorted((s["pk"], s["sk"], s["block_id"]) for s in swept.items("SLOT#")) == [
        (f"SLOT#{nacl}|egress", "00014", "foreign"),
        (f"SLOT#{nacl}|ingress", "00013", "foreign"),
    ]
    # A second sweep finds nothing to do, and a new block avoids the quarantined numbers
    assert sweep()["repairs"] == {}
    created = block("203.0.113.30")
    assert {r["rule_number"] for r in created["rules"]} == {10}


def test_a_stopped_execution_s_block_is_released_by_the_sweeper(swept: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given: an active block whose execution was stopped in its Wait (a long block: a short one can
    # expire, by its own execution, before a loaded machine gets to stop it)
    created = block("203.0.113.31", duration=600)
    execution = swept.execution_arn(created["id"])
    wait_until(lambda: (swept.path(execution) or [""])[-1] == "WaitUntilExpiry", 30, "the Wait")
    swept.sfn.stop_execution(executionArn=execution)
    assert swept.finished(execution)["status"] == "ABORTED"
    assert swept.path(execution)[-1] == "WaitUntilExpiry"

    # When: the sweep runs after the block's expiry (its clock, and the lifecycle's, 10 minutes on)
    def later() -> float:
        return time.time() + 601

    monkeypatch.setattr(wiring.lifecycle().ctx, "now", later)
    monkeypatch.setattr(wiring.sweeper(), "now", later)

    assert sweep()["repairs"] == {"expired_late": 1}

    assert swept.block(created["id"])["state"] == "expired"
    assert all(swept.managed(n) == [] for n in swept.nacl_ids)
    assert swept.items("SLOT#") == [] and swept.items("ADDR#") == []


def test_a_deleted_block_item_leaves_no_entry_behind(swept: Stack) -> None:
    created = block("203.0.113.32")
    swept.ddb.Table(swept.table_name).delete_item(Key={"pk": f"BLOCK#{created['id']}", "sk": "BLOCK"})

    summary = sweep()

    assert summary["repairs"] == {"orphan_removed": 2}  # one per NACL
    assert all(swept.managed(n) == [] for n in swept.nacl_ids)
    assert swept.items("SLOT#") == []
    # The stale address lock does not stop the next block of the address
    again = block("203.0.113.32")
    assert again["id"] != created["id"]
    agree(swept)


def test_an_entry_deleted_by_hand_is_put_back(swept: Stack) -> None:
    created = block("203.0.113.33")
    nacl = swept.nacl_ids[0]
    swept.ec2.delete_network_acl_entry(NetworkAclId=nacl, RuleNumber=10, Egress=False)

    assert sweep()["repairs"] == {"reapplied": 1}

    assert swept.managed(nacl) == [(10, False, "203.0.113.33/32")]
    assert swept.block(created["id"])["state"] == "active"
    agree(swept)
    # The block's history says what the sweeper did
    (repaired,) = [
        e for e in wiring.lifecycle().history(wiring.lifecycle().get(created["id"])) if e.source == "sweeper"
    ]
    assert (repaired.event, repaired.reason) == ("repaired", f"reapplied ({nacl} ingress rule 10)")


def test_a_foreign_rule_at_a_block_s_number_moves_the_block(swept: Stack) -> None:
    created = block("203.0.113.34")
    nacl = swept.nacl_ids[0]
    # Someone replaced our entry with a rule of their own at the same number
    swept.ec2.delete_network_acl_entry(NetworkAclId=nacl, RuleNumber=10, Egress=False)
    add_entry(swept, 10, "192.0.2.0/24", action="allow")

    assert sweep()["repairs"] == {"moved": 1}

    assert swept.managed(nacl) == [(10, False, "192.0.2.0/24"), (11, False, "203.0.113.34/32")]
    assert swept.block(created["id"])["rules"][f"{nacl}|ingress"] == 11
    held = {(s["sk"], s["block_id"]) for s in swept.items(f"SLOT#{nacl}|ingress")}
    assert held == {("00010", "foreign"), ("00011", created["id"])}
    # Their rule goes away: the number is free again
    swept.ec2.delete_network_acl_entry(NetworkAclId=nacl, RuleNumber=10, Egress=False)
    assert sweep()["repairs"] == {"slot_freed": 1}
    assert {s["sk"] for s in swept.items(f"SLOT#{nacl}|ingress")} == {"00011"}


def test_a_stray_deny_at_a_block_s_number_is_an_orphan(swept: Stack) -> None:
    block("203.0.113.35")
    nacl = swept.nacl_ids[0]
    swept.ec2.delete_network_acl_entry(NetworkAclId=nacl, RuleNumber=10, Egress=False)
    add_entry(swept, 10, "198.51.100.35/32")

    assert sweep()["repairs"] == {"orphan_removed": 1, "reapplied": 1}

    assert swept.managed(nacl) == [(10, False, "203.0.113.35/32")]
    agree(swept)


def test_a_reservation_never_applied_is_released(swept: Stack) -> None:
    # A block registered and reserved whose execution never ran (it was lost)
    run = wiring.lifecycle()
    registered = run.registration.register(BlockRequest(ip="203.0.113.36", duration=600), source="test").block
    assert len(swept.items("SLOT#")) == 2

    assert sweep()["repairs"] == {"reservation_released": 1}

    item = swept.block(registered.id)
    assert (item["state"], item["end_reason"]) == ("failed", "never applied: its execution is missing")
    assert swept.items("SLOT#") == [] and swept.items("ADDR#") == []


def test_a_pending_block_with_a_running_execution_is_left_alone(swept: Stack, fault: Faults) -> None:
    # Apply keeps failing transiently: the execution is still retrying when the sweep comes (a long
    # block: a short one could expire before a loaded machine sweeps, and be swept as expired_late)
    fault("ec2.CreateNetworkAclEntry", "RequestLimitExceeded", times=2)
    run = wiring.lifecycle()
    registered = run.registration.register(BlockRequest(ip="203.0.113.37", duration=600), source="test").block
    swept.start(registered.id)
    wait_until(lambda: swept.items("SLOT#"), 30, "reservation")

    assert sweep()["repairs"] == {}
    # The execution applies the block after its retries, undisturbed, and waits for the expiry
    execution = swept.execution_arn(registered.id)
    wait_until(lambda: (swept.path(execution) or [""])[-1] == "WaitUntilExpiry", 60, "the block applied")
    assert swept.block(registered.id)["state"] == "active"
    assert all(swept.managed(n) == [(10, False, "203.0.113.37/32")] for n in swept.nacl_ids)


def test_a_release_that_died_half_way_is_finished(swept: Stack) -> None:
    created = block("203.0.113.38")
    # The releaser died right after it moved the block to releasing
    wiring.lifecycle().store.transition(
        created["id"], frozenset({"active"}), "releasing", 0, ending=("unblocked", "unblocked by test", None)
    )

    assert sweep()["repairs"] == {"release_resumed": 1}

    item = swept.block(created["id"])
    assert (item["state"], item["end_reason"]) == ("unblocked", "unblocked by test")
    assert all(swept.managed(n) == [] for n in swept.nacl_ids)
    assert swept.items("SLOT#") == [] and swept.items("ADDR#") == []


def test_two_sweeps_at_once_remove_each_orphan_once(swept: Stack) -> None:
    created = block("203.0.113.39")
    for number, cidr in [(11, "198.51.100.1/32"), (12, "198.51.100.2/32"), (13, "198.51.100.3/32")]:
        add_entry(swept, number, cidr)
    summaries: list[dict[str, Any]] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        summaries.append(sweep())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    removed = sum(s["repairs"].get("orphan_removed", 0) for s in summaries)
    assert removed == 3
    assert swept.managed(swept.nacl_ids[0]) == [(10, False, "203.0.113.39/32")]
    assert swept.block(created["id"])["state"] == "active"
    agree(swept)


def test_a_sweep_reads_what_is_live_not_history(swept: Stack) -> None:
    # Given: 5 active blocks and 10,000 ended ones in the table (the ended ones written last: on
    # moto every transaction copies the whole table, which would slow the 5 blocks, not the sweep)
    for i in range(5):
        block(f"203.0.113.{40 + i}")
    write_history(swept, 0, 10_000)
    session = boto3._get_default_session()._session
    counting = ItemCounter()
    session.register("after-call.dynamodb", counting)
    wiring.reset()
    try:
        # When
        summary = sweep()
    finally:
        session.unregister("after-call.dynamodb", counting)
        wiring.reset()

    # Then: 5 live blocks + 10 slots (5 per NACL) + the block index, a few dozen at most
    assert summary["repairs"] == {}
    assert summary["live_blocks"] == 5
    assert counting.items <= 30, counting.items
    assert "Scan" not in counting.calls
    print(f"sweep with 10,000 historical and 5 live blocks read {counting.items} items: {counting.calls}")


def test_every_repair_is_logged_and_emitted_as_a_metric(
    swept: Stack, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    add_entry(swept, 12, "198.51.100.12/32")
    capsys.readouterr()

    with caplog.at_level(logging.INFO):
        sweep()

    repairs = [r.__dict__["repair"] for r in caplog.records if r.getMessage() == "sweeper repair"]
    assert [(r["kind"], r["nacl_id"], r["rule_number"], r["cidr"]) for r in repairs] == [
        ("orphan_removed", swept.nacl_ids[0], 12, "198.51.100.12/32")
    ]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    metrics = [line for line in lines if "_aws" in line and "SweeperRepairs" in line]
    assert [(m["Kind"], m["SweeperRepairs"]) for m in metrics] == [("orphan_removed", [1.0])]
    assert metrics[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "autoblock"
    assert [(m["service"], m["SweeperRepairsTotal"]) for m in lines if "SweeperRepairsTotal" in m] == [
        ("autoblock", [1.0])
    ]
    # Nothing is live: no slot or live-block metric (missing data is no alarm)
    assert not [m for m in lines if "SlotsInUsePercentMax" in m or "LiveBlocks" in m]


def _published(out: str) -> list[str]:
    """The metric names the sweeper published (a workflow still running prints its own Blocks*)."""
    return sorted(
        m["Name"]
        for line in out.splitlines()
        if line.startswith("{") and "_aws" in (record := json.loads(line))
        for d in record["_aws"]["CloudWatchMetrics"]
        for m in d["Metrics"]
        if not m["Name"].startswith("Blocks")
    )


def test_an_idle_sweep_publishes_no_metric_and_logs_nothing(
    swept: Stack, capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    capsys.readouterr()

    summary = sweep()

    # Then: nothing to say, nothing said: no custom metric, no log line, no warning on stderr
    assert summary["repairs"] == {} and summary["live_blocks"] == 0
    out, err = capsys.readouterr()
    assert _published(out) == []
    assert [line for line in (out + err).splitlines() if line.strip()] == []
    assert [str(w.message) for w in recwarn] == []


def test_a_sweep_with_live_blocks_publishes_their_count_and_the_fullest_range(
    swept: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    block("203.0.113.50")
    capsys.readouterr()

    summary = sweep()

    out = capsys.readouterr().out
    assert _published(out) == ["LiveBlocks", "SlotsInUsePercentMax"]
    (fullest,) = [
        json.loads(line)["SlotsInUsePercentMax"] for line in out.splitlines() if "SlotsInUsePercentMax" in line
    ]
    assert fullest == [summary["slots_in_use_percent_max"]] == [100 / swept.rule_limit]
