"""The example ElastAlert2 rules, run by the real elastalert-test-rule, post the attacker and no one else.

A small HTTP server on 127.0.0.1 stands in for the API and records every request; the rules run
over their sample documents with real alerts (`--alert`), exactly as examples/elastalert/README.md
shows. The first run installs ElastAlert2 into uv's cache, so this needs PyPI once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import SECRETS
from tests.e2e.conftest import LocalStack, wait_for
from tests.e2e.elastalert import EXAMPLES_RUN, Example, check_block_request, run_test_rule

pytestmark = pytest.mark.e2e

TOKEN = SECRETS[0]  # the suite's log check looks for this one everywhere


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StandIn:
    """The API's stand-in: where it listens, what it answers, what it received."""

    url: str = ""
    status: int = 202
    requests: list[Request] = field(default_factory=list)


def _handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            stand_in.requests.append(Request("POST", self.path, dict(self.headers.items()), body))
            answer = b'{"status": "pending"}' if stand_in.status < 400 else b'{"error": "unauthorized"}'
            self.send_response(stand_in.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass  # no request lines on stderr

    return Recorder


@pytest.fixture
def api() -> Iterator[StandIn]:
    stand_in = StandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stand_in))
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stand_in
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.mark.parametrize("example", EXAMPLES_RUN, ids=lambda example: example.rule.stem)
def test_the_example_rule_blocks_the_attacker_only(example: Example, api: StandIn, tmp_path: Path) -> None:
    # Given the stand-in API
    recorded = api.requests

    # When elastalert-test-rule runs the rule over its sample documents with real alerts
    done = run_test_rule(example.rule, example.data, api.url, TOKEN, tmp_path)

    # Then one POST /blocks for the attacker, with the bearer token and a body the API accepts:
    # the frequency rule fires again for the attacker's later events, but realert (per source.ip)
    # silences the repeat
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    assert "HTTP Post 2 alert sent." in done.stderr
    assert [(r.method, r.path) for r in recorded] == [("POST", "/blocks")]
    (request,) = recorded
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.body)
    block = check_block_request(body)
    assert block.ip == example.attacker
    assert (block.duration, block.direction) == (3600, "ingress")
    assert body["source"] == f"elastalert:{example.rule.stem.replace('_', '-')}"
    assert block.reason is not None and example.rule.stem.replace("_", "-") in block.reason
    # and none for the addresses below the threshold, and the token in no output
    assert not any(spared.encode() in r.body for r in recorded for spared in example.spared)
    assert TOKEN not in (tmp_path / f"{example.rule.stem}.log").read_text()


def test_a_refused_post_fails_the_run(api: StandIn, tmp_path: Path) -> None:
    # Given an API that refuses the token
    api.status = 401
    example = EXAMPLES_RUN[0]

    # When the rule fires
    done = run_test_rule(example.rule, example.data, api.url, "not-the-token", tmp_path)

    # Then the run fails (--stop-error), so a test against a real stack cannot pass on a lost alert
    assert len(api.requests) == 1
    assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-2000:])
    assert "401 Client Error" in done.stderr


@pytest.mark.parametrize("example", EXAMPLES_RUN, ids=lambda e: e.rule.stem)
def test_each_example_blocks_its_attacker_in_the_local_stack_s_nacls(
    local: LocalStack, example: Example, tmp_path: Path
) -> None:
    # When: elastalert-test-rule runs the rule over its sample documents, alerting to the local stack
    done = run_test_rule(example.rule, example.data, local.url, local.token, tmp_path)

    # Then: the attacker is denied in every NACL, the addresses below the threshold are not
    assert done.returncode == 0, done.stdout[-2000:]
    wanted = f"{example.attacker}/32"
    denied = wait_for(lambda: [d for d in local.denied() if d[3] == wanted], 30, "the attacker's entries")
    assert sorted(n for n, _, egress, _ in denied if not egress) == local.nacl_ids()
    assert not {f"{spared}/32" for spared in example.spared} & {d[3] for d in local.denied()}
    _, _, listed = local.request("GET", "/blocks")
    (block,) = [b for b in listed["blocks"] if b["ip"] == wanted]
    assert block["source"] == f"elastalert:{example.rule.stem.replace('_', '-')}"
