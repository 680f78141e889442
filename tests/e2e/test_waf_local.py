"""WAF on the local stack (``--parameter-overrides WafScope=REGIONAL``): a burst of addresses blocked
with the `autoblock` command, as a shell loop would send them, seen in the IP sets through the emulated
AWS endpoint, then gone once unblocked. (Expiry out of a set, with real executions, is in
tests/integration/test_waf.py and the benchmark's WAF expiry lag.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, LocalStack, start_local_stack, stop_local_stack, wait_for

pytestmark = pytest.mark.e2e

BURST = 200


@pytest.fixture(scope="module")
def waf_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = start_local_stack(
        tmp_path_factory.mktemp("waf"), "--parameter-overrides", "WafScope=REGIONAL WafIpSetsPerFamily=2"
    )
    yield stack
    stop_local_stack(stack)


def autoblock(local: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "autoblock"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AUTOBLOCK_"))}
    env.update({"AUTOBLOCK_LOCAL_STATE": str(local.state_path), "COLUMNS": "80"})
    return subprocess.run(  # noqa: S603 - our own command
        [str(executable), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def in_sets(local: LocalStack) -> set[str]:
    """Every address the stack's IP sets hold, read through the emulated AWS endpoint."""
    wafv2 = local.aws("wafv2")
    found: set[str] = set()
    for summary in wafv2.list_ip_sets(Scope="REGIONAL")["IPSets"]:
        got = wafv2.get_ip_set(Name=summary["Name"], Scope="REGIONAL", Id=summary["Id"])
        found |= set(got["IPSet"]["Addresses"])
    return found


def test_a_burst_blocked_with_the_cli_is_all_in_the_sets_then_gone(waf_stack: LocalStack) -> None:
    # When a few hundred addresses are blocked in WAF with the CLI, several commands at a time
    addresses = [f"203.0.{113 - i // 250}.{i % 250 + 1}" for i in range(BURST)]

    def block(ip: str) -> subprocess.CompletedProcess[str]:
        return autoblock(waf_stack, "block", ip, "--target", "waf", "--for", "30m", "--no-wait")

    with ThreadPoolExecutor(max_workers=8) as pool:
        done = list(pool.map(block, addresses))
    assert [d.returncode for d in done] == [0] * BURST, next(d.stderr for d in done if d.returncode)

    # Then every one of them is in the stack's IP sets, once its block is active
    wanted = {f"{a}/32" for a in addresses}
    wait_for(lambda: in_sets(waf_stack) == wanted, 120, "the burst's addresses in the IP sets")
    status, _, body = waf_stack.request("GET", "/status")
    assert status == 200, body
    assert sum(s["used"] for s in body["waf_sets"]) == BURST
    shown = autoblock(waf_stack, "status")
    assert shown.returncode == 0 and f"{BURST} of 10,000" in shown.stdout, shown.stdout + shown.stderr

    # And once they are unblocked, the sets are empty again
    status, _, body = waf_stack.request("GET", "/blocks")
    assert status == 200 and len(body["blocks"]) == BURST

    def unblock(block_id: str) -> int:
        return waf_stack.request("DELETE", f"/blocks/{block_id}")[0]

    with ThreadPoolExecutor(max_workers=32) as pool:  # each waits for the update without it: they coalesce
        assert set(pool.map(unblock, [b["id"] for b in body["blocks"]])) == {200}
    assert in_sets(waf_stack) == set()
    status, _, body = waf_stack.request("GET", "/blocks")
    assert (status, body["blocks"]) == (200, [])
