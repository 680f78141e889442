"""make bench at tiny sizes, so the benchmark keeps working. Its times are not asserted here; the
call counts the lean core promises are, since they do not depend on the sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import ROOT


def test_the_benchmark_runs_and_writes_its_report(tmp_path: Path) -> None:
    result = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "benchmarks.json").read_text())
    assert set(report) >= {
        "request_to_entry",
        "finding_to_entry",
        "lifecycle",
        "expiry_lag",
        "burst",
        "sweeper",
        "imports",
        "baseline",
        "before",
        "before_after",
    }
    # The lean core's promises, counted at botocore (every session) with the Lambda invocations apart
    warm, cold = report["request_to_entry"]["warm"], report["request_to_entry"]["cold"]
    assert warm["calls"][-1] == cold["calls"][-1] == "EC2.CreateNetworkAclEntry"
    assert warm["total"] <= 4, warm["calls"]
    assert "SecretsManager.GetSecretValue" in cold["calls"]  # the recorder sees Powertools' own session
    assert report["finding_to_entry"]["warm"]["total"] <= 4, report["finding_to_entry"]["warm"]["calls"]
    life = report["lifecycle"]
    assert life["path"][-1] == "Released"
    assert life["total"] <= 10, life["calls"]
    assert life["invocations_before_entry"] <= 2
    assert life["state_transitions"] <= 9
    assert set(report["request_to_entry"]["latency"]["entry_ms"]) == {"p50", "p99"}
    assert set(report["burst"]["slot_view"]) == {"hits", "misses", "hit_rate"}
    assert set(report["imports"]["modules"]) == {
        "autoblock.handlers.api",
        "autoblock.handlers.tasks",
        "autoblock.handlers.sweeper",
    }
    assert report["burst"]["invariant_violations"] == 0
    assert report["expiry_lag"]["removed"] == report["expiry_lag"]["blocks"]
    assert sum(report["baseline"]["calls_per_block"].values()) > 0
    markdown = (tmp_path / "benchmarks.md").read_text()
    assert "# Benchmarks" in markdown
    assert "## Before and after the lean core" in markdown
    # WAF: the burst's sets hold exactly its blocks, in fewer updates than blocks, never over the rate
    waf = report["waf"]
    assert waf["burst"]["invariant_violations"] == 0
    assert waf["burst"]["blocks"] == {"active": waf["burst"]["requests"]}
    assert waf["burst"]["updates_accepted"] < waf["burst"]["requests"]
    assert waf["burst"]["peak_updates_per_second"] <= 1
    assert waf["sweep"]["rows"]["autoblock"]["items_read"] < waf["sweep"]["waf_blocks"]
    assert waf["expiry_lag"]["removed"] == waf["expiry_lag"]["blocks"]
    assert "## WAF IP sets: a burst of" in markdown
