"""Write functions/requirements.txt from uv.lock: what every function ships.

The project's own dependencies (no dev group, no extras), pinned as locked, minus what the Lambda
python3.13 runtime already has: boto3 and its dependencies botocore, s3transfer, jmespath,
python-dateutil, six and urllib3. jmespath is still installed by ``sam build`` (Powertools requires
it; 25 KB); none of what remains depends on botocore. ``--check`` fails when the file drifts.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "functions" / "requirements.txt"
RUNTIME_PROVIDES = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")
HEADER = "# Generated from uv.lock by `make requirements` (scripts/requirements.py); do not edit.\n"


def uv() -> list[str]:
    if importlib.util.find_spec("uv"):
        return [sys.executable, "-m", "uv"]
    if found := shutil.which("uv"):
        return [found]
    return ["python3", "-m", "uv"]  # as the Makefile runs it


def requirements() -> str:
    command = [*uv(), "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project"]
    command += ["--no-header", "--no-annotate", "--format", "requirements.txt"]
    for name in RUNTIME_PROVIDES:
        command += ["--no-emit-package", name]
    exported = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout  # noqa: S603
    return HEADER + exported


def main(argv: list[str]) -> int:
    text = requirements()
    if "--check" in argv:
        if TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} differs from uv.lock (run: make requirements)")
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
