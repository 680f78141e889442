"""The local stack over real HTTP: what a newcomer does in the README's first minutes."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from autoblock.handlers import api
from autoblock_local import apigw
from autoblock_local.emulator import load_template
from tests.e2e.conftest import ROOT, LocalStack, start_local_stack, stop_local_stack, wait_for

pytestmark = pytest.mark.e2e


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_block_list_extend_unblock_over_http(local: LocalStack) -> None:
    # When: a block, over HTTP, with the printed token
    status, _, created = local.request("POST", "/blocks", {"ip": "203.0.113.201", "duration": 600, "reason": "e2e"})

    # Then: answered at once with the rule numbers it holds, and denied in every demo NACL moments later
    assert status == 202, created
    assert created["state"] == "pending" and len(created["rules"]) == 2
    assert local.settled(created["id"])["state"] == "active"
    nacls = local.nacl_ids()
    assert len(nacls) == 2
    rules = {(r["nacl_id"], r["rule_number"]) for r in created["rules"]}
    assert {(n, number) for n, number in rules} <= {(n, r) for n, r, _, _ in local.denied()}
    assert {(n, r, False, "203.0.113.201/32") for n, r in rules} <= local.denied()
    # Listed
    status, _, listed = local.request("GET", "/blocks")
    assert status == 200
    assert created["id"] in [b["id"] for b in listed["blocks"]]
    # A repeat extends it, never a second entry
    status, _, again = local.request("POST", "/blocks", {"ip": "203.0.113.201", "duration": 1200})
    assert (status, again["id"]) == (200, created["id"])
    assert seconds(again["expires_at"]) > seconds(created["expires_at"])
    assert len([d for d in local.denied() if d[3] == "203.0.113.201/32"]) == 2
    # Unblocked: the entries are gone before the answer
    status, _, ended = local.request("DELETE", f"/blocks/{created['id']}")
    assert (status, ended["state"]) == (200, "unblocked")
    assert [d for d in local.denied() if d[3] == "203.0.113.201/32"] == []


def test_a_block_is_released_within_seconds_of_its_deadline(local: LocalStack) -> None:
    status, _, created = local.request("POST", "/blocks", {"ip": "198.51.100.202", "duration": 6})
    assert status == 202, created
    assert local.settled(created["id"])["state"] == "active"
    assert [d for d in local.denied() if d[3] == "198.51.100.202/32"]

    wait_for(lambda: not [d for d in local.denied() if d[3] == "198.51.100.202/32"], 30, "the entry to go")

    status, _, ended = local.request("GET", f"/blocks/{created['id']}")
    assert ended["state"] == "expired"
    assert 0 <= seconds(ended["ended_at"]) - seconds(ended["expires_at"]) <= 5


@pytest.mark.parametrize(
    ("token", "status", "error"),
    [(None, 401, "unauthorized"), ("not-the-token", 401, "unauthorized")],
)
def test_a_missing_or_wrong_token_is_refused(local: LocalStack, token: str | None, status: int, error: str) -> None:
    answer, headers, body = local.request("GET", "/blocks", token=token)
    assert (answer, body["error"]) == (status, error)
    assert headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"ip": "not-an-address"}, 400, "invalid_address"),
        ({"ip": "10.0.0.1"}, 422, "not_blockable"),
        (b"{", 400, "invalid_json"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    local: LocalStack, body: dict[str, str] | bytes, status: int, error: str
) -> None:
    before = local.denied()
    answer, _, refused = local.request("POST", "/blocks", body)
    assert (answer, refused["error"]) == (status, error), refused
    assert local.denied() == before


def test_an_unknown_route_gets_api_gateway_s_answer(local: LocalStack) -> None:
    status, _, body = local.request("GET", "/admin")
    assert (status, body) == (403, {"message": "Missing Authentication Token"})
    status, _, body = local.request("PUT", "/blocks")
    assert (status, body) == (403, {"message": "Missing Authentication Token"})


def test_every_api_event_of_the_template_is_served_locally_by_the_api_function(local: LocalStack) -> None:
    template = load_template()
    served = apigw.routes(template)
    declared = {
        (spec["Properties"]["Method"].upper(), spec["Properties"]["Path"])
        for spec in template["Resources"]["ApiFunction"]["Properties"]["Events"].values()
        if spec["Type"] == "Api"
    }
    # The same routes as the template, each reaching the handler the template names
    assert {(r.method, r.resource) for r in served} == declared
    assert {r.handler for r in served} == {template["Resources"]["ApiFunction"]["Properties"]["Handler"]}
    # ... which has exactly those routes in its resolver ...
    in_code = set(api.router.routes)
    assert in_code == declared
    # ... and each one answers through the handler: unauthenticated → the handler's 401, not the gateway's 403
    for method, path in sorted(declared):
        concrete = path.replace("{block_id}", "0" * 32)
        status, _, body = local.request(method, concrete, token=None)
        assert (status, body.get("error")) == (401, "unauthorized"), (method, path)


def test_a_guardduty_finding_put_on_the_emulated_endpoint_blocks_its_attacker(local: LocalStack) -> None:
    # Given: a finding as EventBridge delivers it (the fixture `autoblock send-event` sends)
    finding = json.loads((ROOT / "events" / "guardduty_rds_login_attempt.json").read_text())
    attacker = "203.0.113.99/32"
    assert attacker.split("/")[0] in json.dumps(finding)

    answer = local.aws("events").put_events(
        Entries=[
            {
                "Source": finding["source"],
                "DetailType": finding["detail-type"],
                "Detail": json.dumps(finding["detail"]),
            }
        ]
    )

    assert answer["FailedEntryCount"] == 0
    wait_for(lambda: any(d[3] == attacker for d in local.denied()), 30, "the finding's block")
    _, _, listed = local.request("GET", "/blocks")
    (block,) = [b for b in listed["blocks"] if b["ip"] == attacker]
    assert block["source"].startswith("guardduty:")


def test_an_event_the_rule_does_not_match_starts_nothing(local: LocalStack) -> None:
    before = local.denied()
    answer = local.aws("events").put_events(
        Entries=[{"Source": "my.app", "DetailType": "GuardDuty Finding", "Detail": json.dumps({"ip": "192.0.2.99"})}]
    )
    assert answer["FailedEntryCount"] == 0
    time.sleep(1.5)  # the poller's cycle is 0.25 s: long enough for a wrong delivery to show
    assert local.denied() == before


# What a user's shell may hold: a profile, keys, an endpoint. None of it may reach AWS, and any
# attempt to leave this machine would go to a proxy that is not there.
HOSTILE_ENVIRONMENT = {
    "AWS_PROFILE": "production",
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_ENDPOINT_URL": "https://aws.example.invalid",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}


def test_rule_limit_overrides_and_a_clean_stop_whatever_aws_settings_the_shell_holds(tmp_path: Path) -> None:
    stack = start_local_stack(
        tmp_path,
        "--nacls",
        "1",
        "--rule-limit",
        "2",
        "--parameter-overrides",
        "WhenFull=reject",
        env=HOSTILE_ENVIRONMENT,
    )
    try:
        created = []
        for ip in ("203.0.113.211", "203.0.113.212"):
            status, _, body = stack.request("POST", "/blocks", {"ip": ip, "duration": 600})
            assert status == 202, body
            created.append(body["id"])
        status, _, full = stack.request("POST", "/blocks", {"ip": "203.0.113.213", "duration": 600})
        assert (status, full["error"]) == (503, "capacity_exceeded")
        assert "holds 2 of 2 blocks" in full["message"]
        # POST answers while a block is pending: its workflow writes the entry a moment later
        assert [stack.settled(block_id)["state"] for block_id in created] == ["active", "active"]
        assert len(stack.denied()) == 2
    finally:
        output = stop_local_stack(stack)
    assert stack.token not in output.split("token", 1)[1].split("\n", 1)[1]  # printed once, in the banner


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--parameter-overrides", "RuleLimt=3"], "template.yaml has no parameter 'RuleLimt'"),
        (["--parameter-overrides", "WhenFull=sometimes"], "WhenFull='sometimes': must be one of reject"),
        (["--rule-limit", "99"], "RuleLimit=99: must be between"),
        (["--parameter-overrides", "NetworkAclIds=acl-1"], "NetworkAclIds cannot be overridden here"),
    ],
)
def test_a_bad_option_is_a_readable_error(tmp_path: Path, args: list[str], message: str) -> None:
    import subprocess
    import sys

    done = subprocess.run(  # noqa: S603 - our own entry point
        [sys.executable, "-m", "autoblock_local.stack", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"AUTOBLOCK_LOCAL_STATE": str(tmp_path / "local.json"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert message in done.stderr
