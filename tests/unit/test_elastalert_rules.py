"""The example ElastAlert2 rules (examples/elastalert) post to /blocks what the API accepts.

No ElastAlert2 here (tests/e2e runs the real one): the rule files are read as ElastAlert2 reads them
(${VARIABLES} expanded, then YAML), and each body is built as its post2 alerter builds it, from the
rule's last sample document, then checked against the API's own model. A renamed API field fails here.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from typing import Any

import pytest
import yaml
from jinja2 import Template

from tests.e2e.elastalert import CONFIG, EXAMPLES_RUN, Example, check_block_request, command_for, environment_for

URL = "http://api.example.test/prod"
TOKEN = "unit-token"

ids = [example.rule.stem for example in EXAMPLES_RUN]


def read_rule(example: Example, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """As elastalert.yaml.read_yaml does: os.path.expandvars over the text, then YAML."""
    monkeypatch.setenv("AUTOBLOCK_URL", URL)
    monkeypatch.setenv("AUTOBLOCK_TOKEN", TOKEN)
    rule: dict[str, Any] = yaml.safe_load(os.path.expandvars(example.rule.read_text()))
    return rule


def lookup(document: dict[str, Any], dotted: str) -> Any:
    """elastalert.util.lookup_es_key for plain nested objects."""
    value: Any = document
    for part in dotted.split("."):
        value = value[part]
    return value


def documents(example: Example) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads(example.data.read_text())
    return loaded


def post2_body(rule: dict[str, Any], match: dict[str, Any]) -> dict[str, Any]:
    """As elastalert.alerters.httppost2 builds it: the payload rendered as a Jinja template, then raw fields."""
    template = Template(json.dumps(rule["http_post2_payload"]))
    body: dict[str, Any] = json.loads(template.render(**match, **{rule["jinja_root_name"]: match}))
    return body | {name: lookup(match, field) for name, field in rule["http_post2_raw_fields"].items()}


@pytest.mark.parametrize("example", EXAMPLES_RUN, ids=ids)
def test_the_rule_posts_a_block_request_with_the_bearer_token(
    example: Example, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule = read_rule(example, monkeypatch)
    name = example.rule.stem.replace("_", "-")

    assert rule["name"] == name
    assert rule["alert"] == ["post2"]
    assert rule["http_post2_url"] == f"{URL}/blocks"
    assert rule["http_post2_headers"] == {"Authorization": f"Bearer {TOKEN}"}
    # the address blocked is the address counted
    assert rule["http_post2_raw_fields"] == {"ip": rule["query_key"]}

    body = post2_body(rule, documents(example)[-1])

    assert set(body) == {"ip", "duration", "reason", "direction", "source"}
    block = check_block_request(body)
    assert (block.duration, block.direction, body["source"]) == (3600, "ingress", f"elastalert:{name}")
    assert block.reason is not None and name in block.reason and "{" not in block.reason


@pytest.mark.parametrize("example", EXAMPLES_RUN, ids=ids)
def test_no_token_or_address_is_written_in_the_rule(example: Example) -> None:
    text = example.rule.read_text()
    assert "${AUTOBLOCK_TOKEN}" in text
    assert "${AUTOBLOCK_URL}" in text
    assert "Bearer ${AUTOBLOCK_TOKEN}" in text
    assert "http://" not in text and "https://" not in text


def _matches(document: dict[str, Any], clause: dict[str, Any]) -> bool:
    """The filter clauses the examples use: term and range."""
    ((kind, condition),) = clause.items()
    ((field, wanted),) = condition.items()
    value = lookup(document, field)
    if kind == "term":
        return bool(value == wanted)
    if kind == "range":
        bounds = {"gte": value.__ge__, "gt": value.__gt__, "lte": value.__le__, "lt": value.__lt__}
        return all(bounds[op](limit) for op, limit in wanted.items())
    raise AssertionError(f"no check for {kind} filters yet")


@pytest.mark.parametrize("example", EXAMPLES_RUN, ids=ids)
def test_the_sample_documents_put_exactly_the_attacker_over_the_threshold(
    example: Example, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule = read_rule(example, monkeypatch)
    docs = documents(example)
    # elastalert-test-rule --data skips the rule's filter, so every sample must pass it
    assert all(_matches(doc, clause) for doc in docs for clause in rule["filter"])
    window = timedelta(**rule["timeframe"])
    most: dict[str, int] = {}
    times: dict[str, list[datetime]] = {}
    for doc in docs:
        times.setdefault(lookup(doc, rule["query_key"]), []).append(datetime.fromisoformat(doc["@timestamp"]))
    for address, seen in times.items():
        most[address] = max(sum(1 for t in seen if start <= t < start + window) for start in seen)

    over = {address for address, count in most.items() if count >= rule["num_events"]}
    assert over == {example.attacker}
    assert set(most) - over == set(example.spared)


def test_the_config_is_what_elastalert_test_rule_needs() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert {"es_host", "es_port", "writeback_index", "run_every", "buffer_time", "rules_folder"} <= set(config)


def test_the_runner_passes_the_token_in_the_environment_only_and_no_aws_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("AWS_PROFILE", "admin")
    example = EXAMPLES_RUN[0]

    command = command_for(example.rule, example.data)
    env = environment_for("http://127.0.0.1:3000/", TOKEN)

    assert not any(TOKEN in part for part in command)
    assert command[-6:] == ["--config", str(CONFIG), "--data", str(example.data), "--alert", str(example.rule)]
    assert (env["AUTOBLOCK_URL"], env["AUTOBLOCK_TOKEN"]) == ("http://127.0.0.1:3000", TOKEN)
    assert not [name for name in env if name.startswith("AWS_")]
