"""The local stack's --parameter-overrides, against template.yaml's own constraints, and its view."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import threading
import warnings
from pathlib import Path
from typing import IO, cast

import pytest

from autoblock.models import BlockView, RuleView, WafSetUsage, WafView
from autoblock_cli.connection import ConfigError, NotFound, resolve
from autoblock_local import overrides, stack, state, view
from autoblock_local.emulator import Stack, WafSet, load_template

PARAMETERS = load_template()["Parameters"]


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (["RuleLimit=5"], {"RuleLimit": "5"}),
        (["RuleLimit=5 WhenFull=reject"], {"RuleLimit": "5", "WhenFull": "reject"}),
        (["RuleLimit=5", "WhenFull=reject"], {"RuleLimit": "5", "WhenFull": "reject"}),
        (["ParameterKey=AllowlistCidrs,ParameterValue=192.0.2.0/24"], {"AllowlistCidrs": "192.0.2.0/24"}),
        (["AllowlistCidrs='192.0.2.0/24,198.51.100.0/24'"], {"AllowlistCidrs": "192.0.2.0/24,198.51.100.0/24"}),
    ],
)
def test_both_spellings_sam_accepts(tokens: list[str], expected: dict[str, str]) -> None:
    assert overrides.parse(tokens) == expected


def test_values_are_taken_as_the_template_types_them() -> None:
    checked = overrides.check(PARAMETERS, {"RuleLimit": "5", "WhenFull": "evict-soonest-expiring"})
    assert checked == {"RuleLimit": 5, "WhenFull": "evict-soonest-expiring"}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"RuleLimt": "5"}, "template.yaml has no parameter 'RuleLimt'"),
        ({"RuleLimit": "five"}, "RuleLimit='five': must be a whole number"),
        ({"RuleLimit": "0"}, "RuleLimit=0: must be between 1 and 40"),
        ({"WhenFull": "never"}, "WhenFull='never': must be one of reject, evict-soonest-expiring"),
        ({"NetworkAclIds": "acl-0123"}, "NetworkAclIds cannot be overridden here"),
        ({"ExistingTokenSecretArn": "arn:aws:secretsmanager:x"}, "ExistingTokenSecretArn cannot be overridden here"),
    ],
)
def test_what_the_template_would_refuse_is_refused(given: dict[str, str], message: str) -> None:
    with pytest.raises(overrides.OverrideError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        overrides.check(PARAMETERS, given)


def test_waf_is_offered_with_the_template_s_scopes_and_set_counts() -> None:
    checked = overrides.check(PARAMETERS, {"WafScope": "REGIONAL", "WafIpSetsPerFamily": "2"})

    assert checked == {"WafScope": "REGIONAL", "WafIpSetsPerFamily": 2}
    with pytest.raises(overrides.OverrideError, match="WafIpSetsPerFamily='6': must be one of 1, 2, 3, 4, 5"):
        overrides.check(PARAMETERS, {"WafIpSetsPerFamily": "6"})
    with pytest.raises(overrides.OverrideError, match="WafScope='GLOBAL': must be one of NONE, REGIONAL, CLOUDFRONT"):
        overrides.check(PARAMETERS, {"WafScope": "GLOBAL"})
    with pytest.raises(overrides.OverrideError, match="ProtectedResourceArns cannot be overridden here"):
        overrides.check(PARAMETERS, {"ProtectedResourceArns": "arn:aws:elasticloadbalancing:x"})


def test_with_waf_a_hint_shows_the_first_ip_set_through_the_aws_cli() -> None:
    v4 = WafSet("WafIpSetV4x1", "autoblock-v4-1", "0f1e", "arn:x", "REGIONAL", 4, 1)
    v6 = WafSet("WafIpSetV6x1", "autoblock-v6-1", "9a8b", "arn:y", "REGIONAL", 6, 1)

    without, with_waf = stack.hints(3000, "http://127.0.0.1:3001"), stack.hints(3000, "http://127.0.0.1:3001", [v4, v6])

    assert len(without) == 4
    assert with_waf[:3] == without[:3] and with_waf[4:] == without[3:]
    assert with_waf[3] == (
        "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 aws wafv2 get-ip-set "
        "--scope REGIONAL --name autoblock-v4-1 --id 0f1e --endpoint-url http://127.0.0.1:3001 --region us-east-1"
    )


def test_a_token_without_equals_is_refused() -> None:
    with pytest.raises(overrides.OverrideError, match="'RuleLimit' is not Key=Value"):
        overrides.parse(["RuleLimit"])


def _block(block_id: str, state: str = "active", rules: list[tuple[str, str, int]] | None = None) -> BlockView:
    return BlockView(
        id=block_id,
        ip="203.0.113.9/32",
        direction="ingress",
        state=state,
        reason="",
        dry_run=False,
        source="api:x",
        created_at="2026-11-28T15:00:00Z",
        expires_at="2026-11-28T16:00:00Z",
        rules=[RuleView(nacl_id=n, direction=d, rule_number=r) for n, d, r in rules or []],
    )


def test_the_view_shows_one_number_when_every_nacl_shares_it() -> None:
    same = _block("a", rules=[("acl-00001", "ingress", 10), ("acl-00002", "ingress", 10)])
    apart = _block("b", rules=[("acl-00001", "ingress", 10), ("acl-00002", "ingress", 11), ("acl-00001", "egress", 12)])
    assert view._rules(same) == "in 10 in 2 NACLs"
    assert view._rules(apart) == "out 12 in 1 NACL, in 00001:10 in 00002:11"


def _in_waf(block_id: str, ip_set: str, rules: list[tuple[str, str, int]] | None = None) -> BlockView:
    targets = ["nacl", "waf"] if rules else ["waf"]
    waf = WafView(ip_set=ip_set, scope="REGIONAL", state="applied")
    return _block(block_id, rules=rules).model_copy(update={"targets": targets, "waf": waf})


def _rendered(shot: view.Snapshot) -> str:
    from rich.console import Console

    out = io.StringIO()
    fake = cast(Stack, type("FakeStack", (), {"rule_start": 10, "rule_limit": 5}))  # what render reads
    Console(file=out, width=160).print(view.render(fake, shot))
    return out.getvalue()


def test_the_view_says_where_each_block_is_held_and_each_waf_set_s_fill() -> None:
    both = _in_waf("a", "autoblock-v4-1", rules=[("acl-00001", "ingress", 10), ("acl-00002", "ingress", 10)])
    waf_only = _in_waf("b", "autoblock-v6-1")
    sets = [
        WafSetUsage(name="autoblock-v4-1", family=4, used=9876),
        WafSetUsage(name="autoblock-v6-1", family=6, used=1),
    ]

    shown = _rendered(view.Snapshot([both, waf_only], {("acl-00001", "ingress"): 1}, 0, sets, "REGIONAL"))

    assert view._held(both) == "in 10 in 2 NACLs, WAF autoblock-v4-1"
    assert view._held(waf_only) == "WAF autoblock-v6-1"
    assert "held in" in shown and "in 10 in 2 NACLs, WAF autoblock-v4-1" in shown
    assert "WAF IP sets (REGIONAL)" in shown
    assert re.search(r"autoblock-v4-1\s.*IPv4\s.*9,876 of 10,000\s.*124", shown)
    assert re.search(r"autoblock-v6-1\s.*IPv6\s.*1 of 10,000\s.*9,999", shown)
    assert (
        "[acl-00001 rule 10 ingress, acl-00002 rule 10 ingress, WAF autoblock-v4-1]"
        in view.changes(None, view.Snapshot([both], {}, 0), lambda _: "x")[0]
    )


def test_without_waf_the_view_is_as_before() -> None:
    nacl = _block("a", rules=[("acl-00001", "ingress", 10)])

    shown = _rendered(view.Snapshot([nacl], {("acl-00001", "ingress"): 1}, 0))

    assert "held in" not in shown and "WAF" not in shown
    assert re.search(r"\brule\b", shown) and "in 10 in 1 NACL" in shown


def test_the_line_view_prints_what_appeared_changed_and_went_away() -> None:
    first = view.Snapshot([_block("a"), _block("b")], {}, 0)
    second = view.Snapshot([_block("b", state="releasing"), _block("c")], {}, 1)

    lines = view.changes(first, second, lambda block_id: "expired")

    assert [line.split()[0] for line in lines] == ["releasing", "active", "expired"]
    assert [line.split()[-1] for line in lines] == ["b", "c", "a"]
    assert view.changes(second, second, lambda _: "x") == []


# -- one state file per running stack ------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])  # noqa: S607 - a process that is gone once waited for
    child.wait()
    return child.pid


def _stack_state(directory: Path, port: int, pid: int) -> Path:
    path = directory / "autoblock" / f"local-{port}.json"
    state.write(path, {"url": f"http://127.0.0.1:{port}", "port": port, "token": f"token-{port}", "pid": pid})
    return path


def test_two_stacks_have_two_state_files_and_the_cli_asks_which(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path)}
    first, second = _stack_state(tmp_path, 3000, os.getpid()), _stack_state(tmp_path, 3100, os.getpid())

    assert (first.stat().st_mode & 0o777, second.stat().st_mode & 0o777) == (0o600, 0o600)
    assert [f.port for f in state.running(env)] == [3000, 3100]
    with pytest.raises(
        ConfigError, match=r"^2 local stacks are running \(API ports 3000, 3100\): choose one with --port"
    ):
        resolve(None, None, None, None, env)
    assert resolve(None, None, None, None, env, port=3100).url == "http://127.0.0.1:3100"
    with pytest.raises(NotFound, match="no local stack is running on port 3200"):
        resolve(None, None, None, None, env, port=3200)


def test_stopping_one_stack_leaves_the_other_s_file(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path)}
    first, second = _stack_state(tmp_path, 3000, os.getpid()), _stack_state(tmp_path, 3100, os.getpid() + 1)

    state.remove(second, os.getpid() + 1)  # the second stack stops
    state.remove(first, os.getpid() + 1)  # a stack never removes a file it did not write

    assert first.exists() and not second.exists()
    assert resolve(None, None, None, None, env).url == "http://127.0.0.1:3000"


def test_a_stale_state_file_is_ignored_and_removed(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path)}
    live = _stack_state(tmp_path, 3000, os.getpid())
    stale = _stack_state(tmp_path, 3100, _dead_pid())

    found = state.running(env)

    assert [f.path for f in found] == [live]
    assert not stale.exists()
    assert resolve(None, None, None, None, env).url == "http://127.0.0.1:3000"
    live.unlink()
    with pytest.raises(NotFound, match=r"^no local stack is running: start one with `make local`"):
        resolve(None, None, None, None, env)


def test_the_state_and_log_files_are_named_after_the_port() -> None:
    home = {"XDG_STATE_HOME": "/x"}
    assert state.path_for(3100, home) == Path("/x/autoblock/local-3100.json")
    assert state.log_path_for(state.path_for(3100, home)) == Path("/x/autoblock/local-3100.log")
    assert state.path_for(3100, {"AUTOBLOCK_LOCAL_STATE": "/y/s.json"}) == Path("/y/s.json")


# -- the handlers' output: the log file only -----------------------------------------------------


def test_the_log_file_keeps_each_thread_s_lines_whole_and_drops_metric_documents(tmp_path: Path) -> None:
    target = (tmp_path / "local.log").open("w")
    log = stack.LogFile(target, drop_metrics=True)
    emf = json.dumps({"_aws": {"Timestamp": 1, "CloudWatchMetrics": []}, "BlocksApplied": [1.0]})

    def half_lines(name: str) -> None:
        for n in range(50):
            log.write(f'{{"message": "{name} {n}"')
            log.write("}\n")

    threads = [threading.Thread(target=half_lines, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    print(emf, file=log)
    for thread in threads:
        thread.join()
    log.close()

    lines = (tmp_path / "local.log").read_text().splitlines()
    assert sorted(json.loads(line)["message"] for line in lines) == sorted(
        f"{name} {n}" for name in ("a", "b") for n in range(50)
    )


def test_every_logger_ends_in_the_log_file_and_none_on_the_terminal(tmp_path: Path) -> None:
    from aws_lambda_powertools import Logger

    terminal = io.StringIO()
    target = (tmp_path / "local.log").open("w")
    log = stack.LogFile(target, drop_metrics=True)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("service_undefined").level)
    early = logging.getLogger("early")
    early.addHandler(logging.StreamHandler(terminal))  # bound to the terminal before the routing
    try:
        stack.route_logs(log, terminal=(terminal,))
        # A child made before the service name was set, and the service's own logger (it filters root handlers)
        orphan = logging.getLogger("service_undefined.autoblock.logic.lifecycle")
        orphan.setLevel("INFO")
        service = Logger(service="autoblock-unit", stream=cast("IO[str]", log))

        orphan.info("block registered")
        service.info("request refused")
        early.warning("early bird")
        warnings.warn("a library's warning", stacklevel=1)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("service_undefined").setLevel(saved[2])
        early.handlers.clear()
        logging.captureWarnings(False)
        log.close()

    written = (tmp_path / "local.log").read_text()
    assert terminal.getvalue() == ""
    messages = [json.loads(line).get("message") if line.startswith("{") else line for line in written.splitlines()]
    assert messages.count("block registered") == 1
    assert messages.count("request refused") == 1  # once: not again through the root
    assert "early bird" in written and "a library's warning" in written
