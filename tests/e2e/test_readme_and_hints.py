"""What a new user pastes: the banner's "Try" hints and README's "Try it" blocks, run as they are written
in a new shell (no AWS_* or AUTOBLOCK_* variables) against a local stack found as a user's is found
(``$XDG_STATE_HOME/autoblock/local-<port>.json``); and what a second stack and the handlers' logs do.

``aws``: where the machine has no working AWS CLI, an ``aws`` on PATH runs AWS CLI v1 from PyPI through
``uv run --with awscli`` (the same commands, options and environment variables; v1 rather than v2,
which is not on PyPI).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from rich.cells import cell_len

from tests.e2e.conftest import ROOT, LocalStack, banner, free_port, start_local_stack, stop_local_stack, wait_for
from tests.e2e.elastalert import uv_command

pytestmark = pytest.mark.e2e

AWSCLI = "awscli==1.46.3"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state-home")


@pytest.fixture(scope="module")
def local(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = start_local_stack(tmp_path_factory.mktemp("local"), "--sweep-every", "5", state_home=home)
    banner(stack)
    yield stack
    stop_local_stack(stack)


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory put first on PATH: an ``aws`` when the machine has none that works."""
    directory = tmp_path_factory.mktemp("tools")
    found = shutil.which("aws")
    works = found and subprocess.run([found, "--version"], capture_output=True, check=False).returncode == 0  # noqa: S603
    if not works:
        uv = " ".join(uv_command())
        shim = directory / "aws"
        shim.write_text(f'#!/bin/sh\nexec {uv} run --quiet --no-project --with {AWSCLI} aws "$@"\n')
        shim.chmod(0o755)
    return directory


def shell(command: str, home: Path, tools: Path, columns: int = 80) -> subprocess.CompletedProcess[str]:
    """``command`` in bash in the repository, as in a new terminal of the same user (80 columns)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AUTOBLOCK_")) and k != "VIRTUAL_ENV"}
    env |= {"PATH": f"{tools}:{env.get('PATH', '/usr/bin:/bin')}", "XDG_STATE_HOME": str(home)}
    env |= {"COLUMNS": str(columns), "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    return subprocess.run(  # noqa: S603 - the documented commands
        ["bash", "-e", "-o", "pipefail", "-c", command],  # noqa: S607
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def json_documents(text: str) -> list[Any]:
    """The JSON documents printed one after the other (curl -s adds no newline)."""
    decoder, documents, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        document, at = decoder.raw_decode(text, at)
        documents.append(document)
    return documents


def fits(output: str, columns: int = 80) -> None:
    assert max((cell_len(line.rstrip()) for line in output.splitlines()), default=0) <= columns, output


def unblock_everything(local: LocalStack) -> None:
    for block in local.request("GET", "/blocks")[2]["blocks"]:
        local.request("DELETE", f"/blocks/{block['id']}")


def test_each_hint_the_banner_prints_works_pasted_into_a_new_shell(local: LocalStack, home: Path, tools: Path) -> None:
    lines = banner(local)
    start = next(i for i, line in enumerate(lines) if line.startswith("Try, in "))
    hints = [line.strip() for line in lines[start + 1 : lines.index("ready")]]
    assert len(hints) == 4
    cli, curl, aws, send = hints
    try:
        blocked = shell(cli, home, tools)
        assert blocked.returncode == 0, blocked.stderr
        assert blocked.stdout.startswith("created: 203.0.113.9/32\n")

        listed = shell(curl, home, tools)
        assert listed.returncode == 0, listed.stderr
        assert "203.0.113.9/32" in [b["ip"] for b in json.loads(listed.stdout)["blocks"]]

        described = shell(aws, home, tools)
        assert described.returncode == 0, described.stderr
        entries = [e for a in json.loads(described.stdout)["NetworkAcls"] for e in a["Entries"]]
        assert {e["CidrBlock"] for e in entries if e["RuleAction"] == "deny"} >= {"203.0.113.9/32"}

        sent = shell(send, home, tools)
        assert sent.returncode == 0, sent.stderr
        assert re.match(
            r"sent: event id [0-9a-f-]{36}\nactive: 203\.0\.113\.7/32 ingress \(block [0-9a-f]{8}, ", sent.stdout
        )
    finally:
        unblock_everything(local)


def readme_try_it_blocks() -> list[str]:
    """The ```bash blocks of README's "Try it" section, in order, as written."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Try it on your machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.DOTALL)


def test_readme_s_try_it_commands_run_as_written(local: LocalStack, home: Path, tools: Path) -> None:
    cli, curl, aws = readme_try_it_blocks()[:3]
    try:
        # The autoblock command
        done = shell(cli, home, tools)
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        fits(out)
        assert out.startswith("created: 203.0.113.9/32\n")
        assert re.search(
            r"^1 live block .*\n.*\n.*\n[0-9a-f]{8}\s+203\.0\.113\.9/32\s+ingress\s+active\s+10\s", out, re.M
        ), out
        assert "active blocks: 1   rule numbers: 10-19   when full: reject   dry run: no" in out
        assert re.search(r"^active: 203\.0\.113\.7/32 ingress \(block [0-9a-f]{8}, [0-9dhms ]+ left\)$", out, re.M)
        assert re.search(r"^history of 203\.0\.113\.9/32, \d{4}-\d\d-\d\d \(UTC\)", out, re.M)
        assert re.search(r"^\d\d:\d\d:\d\d\s+requested\s+[0-9a-f]{8}\s+api:", out, re.M)
        assert re.search(r"^\d\d:\d\d:\d\d\s+applied\s+[0-9a-f]{8}\s+api:", out, re.M)
        assert "unblocked: 203.0.113.7/32\n" in out
        assert not [d for d in local.denied() if d[3] == "203.0.113.7/32"]

        # curl, with the URL and token from `autoblock env`
        done = shell(curl, home, tools)
        assert done.returncode == 0, done.stderr
        extended, listed = json_documents(done.stdout)
        assert (extended["ip"], extended["state"]) == ("203.0.113.9/32", "active")
        assert [b["ip"] for b in listed["blocks"]] == ["203.0.113.9/32"]

        # AWS's CLI on the emulator, with `autoblock env --aws`
        done = shell(aws, home, tools)
        assert done.returncode == 0, done.stderr
        denies, put = json_documents(done.stdout)
        ours = {e.get("CidrBlock") for entries in denies for e in entries if e["RuleNumber"] != 32767}
        assert ours == {"203.0.113.9/32"}  # beside every NACL's final deny-all, 32767
        assert put["FailedEntryCount"] == 0
        finding = json.loads((ROOT / "events" / "guardduty_rds_login_attempt.json").read_text())
        attacker = finding["detail"]["service"]["action"]["rdsLoginAttemptAction"]["remoteIpDetails"]["ipAddressV4"]
        wait_for(lambda: f"{attacker}/32" in {d[3] for d in local.denied()}, 30, "the RDS finding's block")
    finally:
        unblock_everything(local)


def test_with_waf_the_ip_set_hint_works_pasted_into_a_new_shell(tools: Path, tmp_path: Path) -> None:
    # Given a stack with WAF (its own state directory: no other stack is involved)
    home = tmp_path / "state"
    waf = start_local_stack(
        tmp_path, "--parameter-overrides", "WafScope=REGIONAL WafIpSetsPerFamily=2", state_home=home
    )
    try:
        lines = banner(waf)
        assert any(line.strip().startswith("WAF IP sets   autoblock-v4-1, autoblock-v4-2, ") for line in lines)
        start = next(i for i, line in enumerate(lines) if line.startswith("Try, in "))
        hints = [line.strip() for line in lines[start + 1 : lines.index("ready")]]
        (get_ip_set,) = [h for h in hints if " wafv2 get-ip-set " in h]

        # When the hint is pasted
        shown = shell(get_ip_set, home, tools)

        # Then the AWS CLI shows the stack's first IPv4 set, empty
        assert shown.returncode == 0, shown.stderr
        ip_set = json.loads(shown.stdout)["IPSet"]
        assert (ip_set["Name"], ip_set["IPAddressVersion"], ip_set["Addresses"]) == ("autoblock-v4-1", "IPV4", [])
    finally:
        stop_local_stack(waf)


def test_a_second_stack_leaves_the_first_alone_and_its_handlers_log_to_its_file_only(
    local: LocalStack, home: Path, tools: Path, tmp_path: Path
) -> None:
    # Given a second stack beside the first, in the same state directory
    second = start_local_stack(tmp_path, state_home=home)
    try:
        first_port, second_port = local.ports[0], second.ports[0]
        assert {p.name for p in (home / "autoblock").glob("*.json")} == {
            f"local-{first_port}.json",
            f"local-{second_port}.json",
        }

        # Then the CLI asks which, and --port chooses
        ask = shell("uv run autoblock list", home, tools)
        assert ask.returncode == 2
        ports = ", ".join(str(p) for p in sorted((first_port, second_port)))
        assert ask.stderr.startswith(f"error: 2 local stacks are running (API ports {ports}): choose one with --port")
        chosen = shell(f"uv run autoblock --port {second_port} block 198.51.100.77 --for 5m", home, tools)
        assert chosen.returncode == 0 and chosen.stdout.startswith("created: 198.51.100.77/32\n"), chosen.stderr
        refused = shell(f"uv run autoblock --port {second_port} block 10.0.0.1", home, tools)
        assert refused.returncode == 1 and refused.stderr.startswith("error: refused: 10.0.0.1/32 overlaps")
        dry = shell(f"uv run autoblock --port {second_port} block 198.51.100.78 --dry-run", home, tools)
        assert dry.stdout.startswith("dry run: 198.51.100.78/32: would deny 198.51.100.78/32"), dry.stderr
        ended = shell(f"uv run autoblock --port {second_port} unblock 198.51.100.77", home, tools)
        assert ended.stdout.startswith("unblocked: 198.51.100.77/32\n"), ended.stderr
    finally:
        # When the second stops
        output = stop_local_stack(second)

    # Then the first one's state file is still there, and the CLI finds it alone again
    assert local.state_path.exists()
    assert shell("uv run autoblock list", home, tools).stdout.startswith("no live blocks")
    # The second's terminal showed its banner and its view, and nothing a handler logged
    assert not [line for line in output.splitlines() if line.lstrip().startswith(("{", "Traceback", "WARNING"))]
    log = (home / "autoblock" / f"local-{second.ports[0]}.log").read_text()
    messages = [json.loads(line).get("message") for line in log.splitlines()]
    assert {"block registered", "request refused", "dry run recorded", "block released"} <= set(messages)
    assert '"_aws"' not in log  # POWERTOOLS_METRICS_DISABLED: no EMF documents


def readme_organization_blocks() -> list[str]:
    """The ```bash blocks of README's "Organization mode" section, in order, as written."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Organization mode", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.DOTALL)


@pytest.fixture
def moto_server() -> Iterator[str]:
    """Emulated AWS over HTTP in its own process (moto's server), as AWS's CLI reaches AWS."""
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - moto's own server
        [sys.executable, "-m", "moto.server", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(endpoint), 30, "moto's server")
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(endpoint: str) -> bool:
    try:
        boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1").get_caller_identity()
    except Exception:  # noqa: BLE001 - not listening yet
        return False
    return True


def test_readme_s_organization_mode_commands_run_as_written(moto_server: str, home: Path, tools: Path) -> None:
    # Given an organization with a member account, GuardDuty's delegated administrator
    management = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    organizations = management.client("organizations", endpoint_url=moto_server)
    org_id = organizations.create_organization(FeatureSet="ALL")["Organization"]["Id"]
    admin = organizations.create_account(Email="security@example.com", AccountName="security")
    admin_account = admin["CreateAccountStatus"]["AccountId"]
    organizations.register_delegated_administrator(AccountId=admin_account, ServicePrincipal="guardduty.amazonaws.com")
    # moto keeps this account outside the organization (its describe-organization fails)
    member = management.client("sts", endpoint_url=moto_server).assume_role(
        RoleArn="arn:aws:iam::444455556666:role/OrganizationAccountAccessRole", RoleSessionName="readme"
    )["Credentials"]
    as_management = f"export AWS_ENDPOINT_URL={moto_server} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
    as_member = (
        f"export AWS_ENDPOINT_URL={moto_server} AWS_ACCESS_KEY_ID={member['AccessKeyId']} "
        f"AWS_SECRET_ACCESS_KEY={member['SecretAccessKey']} AWS_SESSION_TOKEN={member['SessionToken']}"
    )
    tag, stack_set, single_account, forwarders, per_region = readme_organization_blocks()
    assert "sam deploy" in per_region  # a real deployment: not run here

    def run(credentials: str, block: str) -> None:
        done = shell(f"{credentials} AWS_DEFAULT_REGION=us-east-1\n{block}", home, tools)
        assert done.returncode == 0, block + done.stdout + done.stderr

    # When each block runs, in the account the README says
    run(as_member, tag)
    run(as_management, stack_set)
    run(as_member, single_account)
    # The forwarders' loop deploys a stack in every Region (about 30, 10 s each on moto): only parsed
    # here; its deploy command is the single-account one's, with region-forwarder.yaml's parameter.
    checked = shell(f"bash -n <<'EOF'\n{forwarders}EOF", home, tools)
    assert checked.returncode == 0, checked.stderr
    assert "--parameter-overrides HomeRegion=" in forwarders

    # Then the stack set trusts the delegated administrator, within the organization
    cloudformation = management.client("cloudformation", endpoint_url=moto_server)
    described = cloudformation.describe_stack_set(StackSetName="autoblock-member")["StackSet"]
    assert described["PermissionModel"] == "SERVICE_MANAGED"
    assert {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]} == {
        "AdministratorAccountId": admin_account,
        "AdministratorStackName": "autoblock",
        "OrganizationId": org_id,
    }
    # the member's own stack made the role in the member account
    member_iam = boto3.Session(
        aws_access_key_id=member["AccessKeyId"],
        aws_secret_access_key=member["SecretAccessKey"],
        aws_session_token=member["SessionToken"],
        region_name="us-east-1",
    ).client("iam", endpoint_url=moto_server)
    trust: Any = member_iam.get_role(RoleName="autoblock-member")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    arn_like = trust["Statement"][0]["Condition"]["ArnLike"]
    assert arn_like == {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/autoblock-*FunctionRole-*"}
