"""The tests' IAM evaluation (tests/support/iam.py) as a pytest plugin.

Every botocore call of the session goes through ``Recorder.observe`` (``BaseClient._make_api_call``
is patched for the whole session, so every boto3 session is seen, Powertools' own included). A test
whose calls a policy does not allow fails, naming each call and the missing statement. At the end
the statement → first test report is written to ``.pytest-iam-report.md``; with pytest-xdist each
worker leaves its findings in a folder the controller merges. On a complete run (the whole suite,
nothing deselected) a statement no call used fails the session unless the resource that brings its
role justifies its Sid in ``Metadata.iam.unexercised``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from botocore.client import BaseClient

from autoblock_local import emulator
from tests.support import iam

REPORT = emulator.ROOT / ".pytest-iam-report.md"
FOLDER = "AUTOBLOCK_IAM_FINDINGS"


def _deployed_refs() -> Mapping[str, Any] | None:
    return emulator.DEPLOYED[-1].refs if emulator.DEPLOYED else None


def _tags(nacl_id: str, account: str, region: str) -> Mapping[str, str]:
    return emulator.nacl_tags(nacl_id, account, region)


RECORDER = iam.Recorder(refs=_deployed_refs, tags=_tags)


def _attribute_to() -> tuple[dict[tuple[str, str], str], str]:
    machines = [
        name
        for name, r in emulator.load_template()["Resources"].items()
        if r["Type"] == "AWS::Serverless::StateMachine"
    ]
    (machine,) = machines  # the interpreter's key names no state machine: one is all it can tell apart
    return iam.handler_frames(), machine


def _access_key(client: BaseClient) -> str:
    signer: Any = getattr(client, "_request_signer", None)
    credentials = getattr(signer, "_credentials", None)
    return str(getattr(credentials, "access_key", "") or "")


@pytest.fixture(autouse=True, scope="session")
def _iam_recording() -> Iterator[None]:
    original = vars(BaseClient)["_make_api_call"]
    frames, machine = _attribute_to()

    def make_api_call(client: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        key = _access_key(client)
        principal = (
            machine
            if key == emulator.STATE_MACHINE_ACCESS_KEY
            else iam.handler_on_stack(frames) or emulator.ACTING.get()
        )
        service = client.meta.service_model.service_id.replace(" ", "")
        call = iam.Call(service, operation_name, api_params, client.meta.region_name or "", key, principal)
        RECORDER.observe(call)
        response = original(client, operation_name, api_params)
        RECORDER.answered(call, response)
        return response

    with mock.patch.object(BaseClient, "_make_api_call", make_api_call):
        yield


def _refused(nodeid: str) -> None:
    refused = RECORDER.take(nodeid)
    if refused:
        pytest.fail("IAM: " + "\n\nIAM: ".join(refused), pytrace=False)


@pytest.fixture(autouse=True)
def _iam_allowed(request: pytest.FixtureRequest) -> Iterator[None]:
    """A call the caller's policy does not allow fails the test that made it: when the test returns,
    and again once every fixture has ended (the executions it started included)."""
    RECORDER.test = request.node.nodeid
    yield
    RECORDER.test = None
    _refused(request.node.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield  # a test that failed by itself reports its own error first (the refusals at teardown)
    _refused(item.nodeid)
    return result


def pytest_configure(config: pytest.Config) -> None:
    # Workers (pytest-xdist) inherit this folder and leave their findings there.
    os.environ.setdefault(FOLDER, tempfile.mkdtemp(prefix="autoblock-iam-"))


def _findings() -> dict[str, Any]:
    return {
        "used": RECORDER.used,
        "actions": {k: sorted(v) for k, v in RECORDER.used_actions.items()},
        "violations": [v.message for v in RECORDER.violations],  # made between tests: no test to fail
        "evaluated": RECORDER.evaluated,
        "deselected": len(_DESELECTED),
    }


_DESELECTED: list[str] = []  # deselected tests that could have made calls (-k, -m, --deselect, --lf)


def pytest_deselected(items: list[pytest.Item]) -> None:
    # The e2e tier runs the stack in a child process, whose calls no recorder here sees.
    _DESELECTED.extend(item.nodeid for item in items if item.get_closest_marker("e2e") is None)


def complete_run(config: pytest.Config, deselected: int) -> bool:
    """The whole suite ran: no path narrower than tests/, no test deselected but e2e ones."""
    roots = {emulator.ROOT, emulator.ROOT / "tests"}
    paths = all((config.invocation_params.dir / a.split("::")[0]).resolve() in roots for a in config.args)
    return paths and not deselected


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    folder = Path(os.environ[FOLDER])
    worker = getattr(session.config, "workerinput", {}).get("workerid")
    if worker is not None:
        (folder / f"{worker}.json").write_text(json.dumps(_findings()))
        return
    merged = [_findings()] + [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    used: dict[str, str] = {}
    actions: dict[str, set[str]] = {}
    for findings in merged:
        for key, test in findings["used"].items():
            used[key] = min(used.get(key, test), test, key=iam.first)
        for key, names in findings["actions"].items():
            actions.setdefault(key, set()).update(names)
    violations = [v for f in merged for v in f["violations"]]
    evaluated = sum(f["evaluated"] for f in merged)
    if not evaluated:
        return  # nothing was attributed (the unit tier alone): no report
    deselected = sum(f["deselected"] for f in merged)
    report = Report(used, actions, violations, evaluated, complete_run(session.config, deselected))
    REPORT.write_text(report.markdown())
    session.config.stash[_SUMMARY] = report.summary()
    if report.failures():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_SUMMARY = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash.get(_SUMMARY, [])
    for line in lines:
        terminalreporter.write_line(line, red=line.startswith("FAILED"))


class Report:
    def __init__(
        self, used: dict[str, str], actions: dict[str, set[str]], violations: list[str], evaluated: int, complete: bool
    ) -> None:
        self.used, self.actions, self.violations, self.evaluated, self.complete = (
            used,
            actions,
            violations,
            evaluated,
            complete,
        )
        self.roles = iam.roles()
        self.statements = iam.catalog()
        self.justified = iam.justifications()

    def justification(self, statement: iam.Statement) -> str | None:
        source = self.roles[statement.role].source
        return self.justified.get(source, {}).get(statement.sid) if statement.sid else None

    def unused(self) -> list[iam.Statement]:
        return [s for s in self.statements if s.key not in self.used]

    def unjustified(self) -> list[iam.Statement]:
        return [s for s in self.unused() if self.justification(s) is None]

    def stale(self) -> list[str]:
        """Justifications naming no statement of their resource's roles, or one a call used."""
        found = []
        for source, sids in self.justified.items():
            mine = [s for s in self.statements if self.roles[s.role].source == source]
            for sid in sids:
                named = [s for s in mine if s.sid == sid]
                if not named:
                    found.append(
                        f"{source}: Metadata.iam.unexercised names Sid {sid}, which none of its statements has"
                    )
                elif self.complete and all(s.key in self.used for s in named):
                    found.append(f"{source}: Sid {sid} is justified as unexercised, but a test used it")
        return found

    def failures(self) -> list[str]:
        found = [f"a call made between tests was refused: {v}" for v in self.violations] + self.stale()
        if self.complete:
            found += [f"unused and not justified: {s.describe()}" for s in self.unjustified()]
        return found

    def summary(self) -> list[str]:
        used = len(self.statements) - len(self.unused())
        lines = [
            f"IAM: {self.evaluated} requests evaluated; {used} of {len(self.statements)} statements used, "
            f"{len(self.unused())} unused ({len(self.unused()) - len(self.unjustified())} justified); "
            f"report in {REPORT.name}" + ("" if self.complete else " (partial run: unused statements not enforced)")
        ]
        lines += [f"FAILED IAM: {f}" for f in self.failures()]
        return lines

    def markdown(self) -> str:
        lines = [
            "# IAM proven by the tests",
            "",
            f"{self.evaluated} IAM requests evaluated, "
            + ("the whole suite." if self.complete else "a partial run (unused statements are not enforced)."),
            "",
            "| Role | Policy | # | Sid | Actions | First test (by name) that used it |",
            "|---|---|---|---|---|---|",
        ]
        for s in self.statements:
            first = self.used.get(s.key)
            if first is None:
                why = self.justification(s)
                first = f"**unused**, justified: {why}" if why else "**unused, not justified**"
            else:
                first = f"`{first}`"
            granted = ", ".join(s.actions or [f"NotAction {a}" for a in s.not_actions])
            lines.append(f"| {s.role} | {s.policy} | {s.index} | {s.sid} | {granted} | {first} |")
        lines += ["", "## Actions granted and never called", ""]
        for s in self.statements:
            if s.key in self.used and s.actions:
                idle = [a for a in s.actions if "*" not in a and a not in self.actions.get(s.key, set())]
                if idle:
                    lines.append(f"- {s.describe()}: {', '.join(idle)}")
        lines += ["", "## AWS managed policies (not in the template; no call of the suite needs them)", ""]
        lines += [f"- {r.name}: {', '.join(r.aws_managed)}" for r in self.roles.values() if r.aws_managed]
        if self.failures():
            lines += ["", "## Failures", ""] + [f"- {f}" for f in self.failures()]
        return "\n".join(lines) + "\n"
