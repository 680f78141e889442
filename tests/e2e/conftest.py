"""The e2e tier: ``autoblock-local`` started as a child process, driven over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from autoblock_local.emulator import wait_until as wait_for
from autoblock_local.stack import port_is_free

__all__ = ["ROOT", "LocalStack", "banner", "start_local_stack", "stop_local_stack", "wait_for"]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalStack:
    process: subprocess.Popen[str]
    state_path: Path
    url: str
    token: str
    aws_endpoint: str
    ports: tuple[int, int]
    output: list[str] = field(default_factory=list)

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = "", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body) of one request; ``token=""`` means the stack's own token."""
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token or self.token}"
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        url = f"{self.url}{path}"
        assert url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(url, data=data, method=method, headers=sent)  # noqa: S310 - checked above
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - checked above
                return answer.status, dict(answer.headers), json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read() or b"null")

    def settled(self, block_id: str, timeout: float = 20) -> Any:
        """The block as GET /blocks/{id} shows it once its workflow applied or refused it (POST answers
        at once with the block pending), as a client polling the API sees it."""

        def shown() -> Any:
            status, _, body = self.request("GET", f"/blocks/{block_id}")
            assert status == 200, body
            return body if body["state"] not in ("pending", "releasing") else None

        return wait_for(shown, timeout, f"block {block_id} still pending")

    def aws(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.aws_endpoint, region_name="us-east-1")  # type: ignore[call-overload]

    def nacl_ids(self) -> list[str]:
        acls = self.aws("ec2").describe_network_acls(Filters=[{"Name": "default", "Values": ["false"]}])
        return sorted(a["NetworkAclId"] for a in acls["NetworkAcls"])

    def denied(self) -> set[tuple[str, int, bool, str]]:
        """(NACL, rule number, egress, CIDR) of every deny entry in the demo NACLs."""
        acls = self.aws("ec2").describe_network_acls(NetworkAclIds=self.nacl_ids())["NetworkAcls"]
        return {
            (a["NetworkAclId"], e["RuleNumber"], e["Egress"], e.get("CidrBlock") or e.get("Ipv6CidrBlock"))
            for a in acls
            for e in a["Entries"]
            if e["RuleAction"] == "deny" and e["RuleNumber"] != 32767
        }


def start_local_stack(
    tmp: Path, *args: str, env: dict[str, str] | None = None, state_home: Path | None = None
) -> LocalStack:
    """``state_home``: the stack finds its state file as a user's does, ``$XDG_STATE_HOME/autoblock/local-<port>.json``;
    else in ``tmp`` through AUTOBLOCK_LOCAL_STATE."""
    api_port, aws_port = free_port(), free_port()
    child = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AUTOBLOCK_"))}
    if state_home is None:
        state_path = tmp / "state" / "local.json"
        child["AUTOBLOCK_LOCAL_STATE"] = str(state_path)
    else:
        state_path = state_home / "autoblock" / f"local-{api_port}.json"
        child["XDG_STATE_HOME"] = str(state_home)
    child.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    command = [
        sys.executable,
        "-m",
        "autoblock_local.stack",
        "--no-view",
        "--port",
        str(api_port),
        "--aws-port",
        str(aws_port),
        *args,
    ]
    process = subprocess.Popen(  # noqa: S603 - our own entry point
        command, cwd=ROOT, env=child, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for(lambda: state_path.exists() or process.poll() is not None, 90, "the local stack to start")
        if process.poll() is not None:
            raise AssertionError(f"the local stack exited: {process.stdout.read() if process.stdout else ''}")
        state = wait_for(lambda: _read(state_path), 10, "the state file")
    except BaseException:
        process.kill()
        raise
    return LocalStack(process, state_path, state["url"], state["token"], state["aws_endpoint"], (api_port, aws_port))


def banner(stack: LocalStack) -> list[str]:
    """The lines the stack printed up to "ready" (read once; kept in ``stack.output``)."""
    if not stack.output:
        assert stack.process.stdout is not None
        for line in stack.process.stdout:
            stack.output.append(line.rstrip("\n"))
            if line.strip() == "ready":
                break
    return stack.output


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def stop_local_stack(stack: LocalStack) -> str:
    """Ctrl-C, as a user would; the process must exit cleanly, leaving no port and no state file behind."""
    stack.process.send_signal(signal.SIGINT)
    try:
        output, _ = stack.process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        raise AssertionError("the local stack did not stop within 30 s of Ctrl-C") from None
    output = "\n".join([*stack.output, output])
    assert stack.process.returncode == 0, output
    assert "stopped; nothing is left running" in output
    assert not stack.state_path.exists()
    assert all(port_is_free(port) for port in stack.ports)
    return output


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One local stack for the module, with a sweep every 5 s instead of every minute."""
    stack = start_local_stack(tmp_path_factory.mktemp("local"), "--sweep-every", "5")
    yield stack
    stop_local_stack(stack)
