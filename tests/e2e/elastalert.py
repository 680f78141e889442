"""Runs ElastAlert2's elastalert-test-rule on an example rule, as examples/elastalert/README.md shows.

ElastAlert2 is not in the project's locked environment (its pins would fight ours: boto3 and
more); uv runs it from an isolated, cached tool environment, as the Makefile runs checkov. The
rule reads the API's address and token from its environment (ElastAlert2 expands ${VARIABLES}
in a rule file), so the token is never on a command line, in a file or in a log.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoblock.models import BlockRequest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "elastalert"
CONFIG = EXAMPLES / "config.yaml"
ELASTALERT2 = "elastalert2==2.31.0"
PYTZ = "pytz==2026.6"
# The contract's label for a detector (CONTRACT.md), until BlockRequest has the field itself.
SOURCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._:/@+-]{0,79}$"


@dataclass(frozen=True)
class Example:
    """One example rule, its sample documents and what they should lead to."""

    rule: Path
    data: Path
    attacker: str  # over the rule's threshold: blocked
    spared: tuple[str, ...]  # below it: never posted


EXAMPLES_RUN = (
    Example(
        EXAMPLES / "rules" / "ssh_brute_force.yaml",
        EXAMPLES / "data" / "ssh_auth.json",
        "203.0.113.7",
        ("198.51.100.23", "192.0.2.50"),
    ),
    Example(
        EXAMPLES / "rules" / "http_4xx_flood.yaml",
        EXAMPLES / "data" / "http_access.json",
        "198.51.100.66",
        ("192.0.2.10",),
    ),
)


def check_block_request(body: dict[str, Any]) -> BlockRequest:
    """`body` is what POST /blocks accepts: the API's own model, which forbids unknown fields."""
    if "source" not in BlockRequest.model_fields:
        source = body.get("source")
        assert isinstance(source, str) and re.fullmatch(SOURCE_PATTERN, source), source
        body = {name: value for name, value in body.items() if name != "source"}
    return BlockRequest.model_validate(body)


# uv finds PyPI and the tool cache with these; nothing else of the caller's environment (above all
# no AWS credentials) reaches the alerter.
_PASSED = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TMPDIR",
        "XDG_CACHE_HOME",
        "PYENV_ROOT",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
    }
)
_PASSED_PREFIXES = ("UV_", "PIP_")


def uv_command() -> list[str]:
    """uv itself: `uv run` names its binary in $UV; else the one on PATH; else `python3 -m uv` (the Makefile's)."""
    if found := os.environ.get("UV") or shutil.which("uv"):
        return [found]
    return [shutil.which("python3") or sys.executable, "-m", "uv"]


def command_for(rule: Path, data: Path) -> list[str]:
    """The command README.md documents; --stop-error makes a failed POST fail the run (exit 2)."""
    return [
        *uv_command(),
        "tool",
        "run",
        "--python",
        "3.13",
        "--from",
        ELASTALERT2,
        "--with",
        PYTZ,
        "elastalert-test-rule",
        "--stop-error",
        "--config",
        str(CONFIG),
        "--data",
        str(data),
        "--alert",
        str(rule),
    ]


def environment_for(url: str, token: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name in _PASSED or name.startswith(_PASSED_PREFIXES)}
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), "127.0.0.1,localhost"]))
    env |= {"TZ": "UTC", "NO_PROXY": no_proxy, "no_proxy": no_proxy}
    return env | {"AUTOBLOCK_URL": url.rstrip("/"), "AUTOBLOCK_TOKEN": token}


def run_test_rule(
    rule: Path, data: Path, url: str, token: str, workdir: Path, *, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Runs `rule` over the documents in `data`, sending real alerts to `url` (POST {url}/blocks).

    Does not raise on a non-zero exit: callers assert on it and on what arrived. The output,
    with the token masked should anything ever print it, is also kept in `workdir/<rule>.log`.
    The first run installs ElastAlert2 into uv's cache (seconds; minutes on a slow network).
    """
    # From the repository root: README.md's working directory, and where a pyenv shim of uv finds
    # .python-version.
    done = subprocess.run(  # noqa: S603 -- a fixed command, no shell
        command_for(rule, data),
        cwd=ROOT,
        env=environment_for(url, token),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )

    def mask(text: str) -> str:
        return text.replace(token, "***") if token else text

    masked = subprocess.CompletedProcess(done.args, done.returncode, mask(done.stdout), mask(done.stderr))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{rule.stem}.log").write_text(
        f"$ {' '.join(done.args)}\nexit {done.returncode}\n--- stdout\n{masked.stdout}\n--- stderr\n{masked.stderr}\n"
    )
    return masked
