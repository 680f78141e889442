"""The `autoblock` command, as a user runs it, against the running local stack (found through its state file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, LocalStack, wait_for

pytestmark = pytest.mark.e2e


def autoblock(local: LocalStack, *args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "autoblock"  # beside the environment's python
    assert executable.exists(), "the autoblock command is installed by the set-up"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AUTOBLOCK_"))}
    env["AUTOBLOCK_LOCAL_STATE"] = str(local.state_path)
    env["COLUMNS"] = str(columns)  # the terminal's width
    return subprocess.run(  # noqa: S603 - our own command
        [str(executable), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_block_list_show_unblock_with_the_cli(local: LocalStack) -> None:
    # When: a block for 30 minutes, as a person types it
    created = as_json(autoblock(local, "block", "203.0.113.221", "--for", "30m", "--reason", "cli e2e", "-o", "json"))

    # Then: applied in the NACLs, listed, shown; a table for people names it too
    assert created["state"] == "active"
    assert {
        (n, r, False, "203.0.113.221/32") for n, r in ((x["nacl_id"], x["rule_number"]) for x in created["rules"])
    } <= (local.denied())
    listed = as_json(autoblock(local, "list", "-o", "json"))
    assert created["id"] in [b["id"] for b in listed["blocks"]]
    shown = as_json(autoblock(local, "show", created["id"], "-o", "json"))
    assert (shown["ip"], shown["reason"]) == ("203.0.113.221/32", "cli e2e")
    table = autoblock(local, "list")
    assert table.returncode == 0 and "203.0.113.221/32" in table.stdout

    # When: unblocked by address
    ended = as_json(autoblock(local, "unblock", "203.0.113.221", "-o", "json"))

    # Then: gone from the NACLs
    assert ended["state"] == "unblocked"
    assert not [d for d in local.denied() if d[3] == "203.0.113.221/32"]


def test_the_cli_s_errors_are_readable_and_exit_non_zero(local: LocalStack) -> None:
    refused = autoblock(local, "block", "10.1.2.3", "--for", "1h")
    assert refused.returncode == 1
    assert "HTTP 422 not_blockable" in refused.stderr

    unknown = autoblock(local, "show", "0" * 32)
    assert unknown.returncode == 1
    assert "HTTP 404 not_found" in unknown.stderr

    bad_duration = autoblock(local, "block", "203.0.113.222", "--for", "5 fortnights")
    assert bad_duration.returncode == 2

    for done in (refused, unknown, bad_duration):
        assert local.token not in done.stdout + done.stderr


def test_send_event_replays_a_guardduty_finding_through_the_template_s_rule(local: LocalStack) -> None:
    done = autoblock(local, "send-event", "events/guardduty_port_probe_unprotected_port.json")

    assert done.returncode == 0, done.stderr
    finding = json.loads((ROOT / "events" / "guardduty_port_probe_unprotected_port.json").read_text())
    probers = {
        f"{d['remoteIpDetails']['ipAddressV4']}/32"
        for d in finding["detail"]["service"]["action"]["portProbeAction"]["portProbeDetails"]
    }
    wait_for(lambda: probers <= {d[3] for d in local.denied()}, 30, "the probers' blocks")


def test_status_and_history_with_the_cli(local: LocalStack) -> None:
    # Given: a block, a dry run and an unblock of one address
    blocked = as_json(autoblock(local, "block", "198.51.100.231", "--for", "10m", "--source", "cli:e2e", "-o", "json"))
    dry = as_json(autoblock(local, "block", "198.51.100.232", "--for", "10m", "--dry-run", "-o", "json"))
    as_json(autoblock(local, "unblock", blocked["id"], "-o", "json"))

    # Then: status counts every NACL and direction of the stack's range
    status = as_json(autoblock(local, "status", "-o", "json"))
    assert {(s["nacl_id"], s["direction"]) for s in status["slots"]} == {
        (n, d) for n in local.nacl_ids() for d in ("ingress", "egress")
    }
    assert all(s["used"] + s["foreign"] + s["free"] == s["limit"] == status["rule_limit"] for s in status["slots"])
    assert autoblock(local, "status").returncode == 0

    # and the history tells the block's story, with its source, and the dry run's
    events = as_json(autoblock(local, "history", "198.51.100.231", "-o", "json"))["events"]
    assert [e["event"] for e in events] == ["requested", "applied", "unblocked"]
    assert events[0]["source"] == "cli:e2e"
    assert (dry["state"], dry["dry_run"]) == ("dry-run", True)
    assert "dry-run" in [e["event"] for e in as_json(autoblock(local, "history", dry["id"], "-o", "json"))["events"]]
    assert not [d for d in local.denied() if d[3] == "198.51.100.232/32"]
    table = autoblock(local, "history", "198.51.100.231")
    assert table.returncode == 0 and "unblocked" in table.stdout


def test_the_list_fits_a_narrow_terminal_and_a_wide_one(local: LocalStack) -> None:
    created = as_json(autoblock(local, "block", "198.51.100.241", "--for", "10m", "--reason", "width", "-o", "json"))
    numbers = ",".join(sorted({str(r["rule_number"]) for r in created["rules"]}))
    short = created["id"][:8]

    narrow = autoblock(local, "list", columns=80).stdout.splitlines()
    wide = autoblock(local, "list", columns=200).stdout

    # 80 columns: one line a block, every value whole (nothing to copy comes cut)
    assert max(len(line.rstrip()) for line in narrow) <= 80
    (line,) = [n for n in narrow if n.startswith(short)]
    assert line.split()[:5] == [short, "198.51.100.241/32", "ingress", "active", numbers]
    assert "width" in line
    # 200 columns: the source and the expiry too
    row = next(r for r in wide.splitlines() if r.startswith(short))
    assert created["source"] in row and created["expires_at"].replace("T", " ").rstrip("Z") in row
    # the short id is taken back
    shown = as_json(autoblock(local, "show", short, "-o", "json"))
    assert shown["id"] == created["id"]
    autoblock(local, "unblock", short)
