"""make bench at tiny sizes, so the benchmark keeps working; its figures are not asserted here."""

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
    assert set(report) >= {"lifecycle", "expiry_lag", "burst", "sweeper", "import_times", "baseline"}
    assert report["lifecycle"]["path"][-1] == "Released"
    assert report["burst"]["invariant_violations"] == 0
    assert report["expiry_lag"]["removed"] == report["expiry_lag"]["blocks"]
    assert sum(report["baseline"]["calls_per_block"].values()) > 0
    assert "# Benchmarks" in (tmp_path / "benchmarks.md").read_text()
