"""Hostile input through every door: the API and the GuardDuty path. Each case has one exact outcome,
and nothing is written anywhere (no table item, no NACL entry, no execution)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from autoblock.handlers import tasks
from autoblock.logic.guardduty import MalformedFinding
from autoblock_local.emulator import FakeLambdaContext
from autoblock_local.invoke import call, event
from tests.integration.conftest import TOKEN, Stack
from tests.support.table import assert_nothing_written

# (ip, HTTP status, error code, text the message must contain)
HOSTILE_ADDRESSES = [
    ("203.0.113.256", 400, "invalid_address", "is not a valid IPv4 or IPv6 address"),
    ("203.0.113.7/33", 400, "invalid_address", "is not a valid IPv4 or IPv6 address"),
    ("203.0.113.7/-1", 400, "invalid_address", "only ASCII digits"),
    ("203.0.113.7/08", 400, "invalid_address", "leading zero in its prefix length"),
    ("203.0.113.5/28", 400, "invalid_address", "host bits set; the network is 203.0.113.0/28"),
    ("::ffff:203.0.113.7", 400, "invalid_address", "IPv4-mapped IPv6 address"),
    ("::ffff:cb00:7107", 400, "invalid_address", "IPv4-mapped IPv6 address"),
    ("fe80::1%eth0", 400, "invalid_address", "only ASCII digits"),
    ("2001:db8::7%25en0", 400, "invalid_address", "only ASCII digits"),
    ("0203.0.113.7", 400, "invalid_address", "is not a valid"),
    ("203.000.113.7", 400, "invalid_address", "is not a valid"),
    ("0x cb.0.113.7", 400, "invalid_address", "only ASCII digits"),
    ("3405803783", 400, "invalid_address", "is not a valid"),  # 203.0.113.7 as an integer
    (" 203.0.113.7", 400, "invalid_address", "only ASCII digits"),
    ("203.0.113.7 ", 400, "invalid_address", "only ASCII digits"),
    ("203.0.113.7\t", 400, "invalid_address", "only ASCII digits"),
    ("２０３.０.１１３.７", 400, "invalid_address", "only ASCII digits"),  # noqa: RUF001 - full-width digits
    ("203.0.113.\u0667", 400, "invalid_address", "only ASCII digits"),  # Arabic-Indic seven
    ("203.0.113.7\u200b", 400, "invalid_address", "only ASCII digits"),  # zero-width space
    ("203.0.113.7;rm -rf /", 400, "invalid_address", "only ASCII digits"),
    ("203.0.113.7/32/32", 400, "invalid_address", "more than one '/'"),
    ("2001:db8::g", 400, "invalid_address", "only ASCII digits"),
    ("2001:db8:::7", 400, "invalid_address", "is not a valid"),
    ("0.0.0.0/0", 422, "not_blockable", "broader than /24"),
    ("::/0", 422, "not_blockable", "broader than /64"),
    ("127.0.0.1", 422, "not_blockable", "loopback"),
    ("169.254.169.254", 422, "not_blockable", "link-local"),
    ("100.64.1.1", 422, "not_blockable", "carrier-grade NAT"),
    ("ff02::1", 422, "not_blockable", "multicast"),
    ("255.255.255.255", 422, "not_blockable", "which autoblock never blocks"),
]


@pytest.mark.parametrize(
    ("ip", "status", "code", "needle"), HOSTILE_ADDRESSES, ids=[repr(c[0]) for c in HOSTILE_ADDRESSES]
)
def test_hostile_addresses(stack: Stack, ip: str, status: int, code: str, needle: str) -> None:
    got_status, body = call("api_create_block.json", TOKEN, body={"ip": ip, "duration": 60})

    assert (got_status, body["error"]) == (status, code)
    assert needle in body["message"]
    assert "\n" not in body["message"] and "\r" not in body["message"]
    assert_nothing_written(stack)


# (body as sent, HTTP status, text the answer must contain)
HOSTILE_BODIES: list[tuple[Any, int, str]] = [
    ({"ip": "203.0.113.7", "duration": 10**30}, 400, "duration must be between 1 and 604800 seconds"),
    ({"ip": "203.0.113.7", "duration": -(2**63)}, 400, "duration must be between 1 and 604800 seconds"),
    ('{"ip": "203.0.113.7", "duration": 1e309}', 422, "int_type"),
    ('{"ip": "203.0.113.7", "duration": NaN}', 422, "int_type"),
    ({"ip": "203.0.113.7", "duration": None}, 202, ""),  # null means the default: accepted (checked below)
    ({"ip": ["203.0.113.7"]}, 422, "string_type"),
    ({"ip": {"$gt": ""}}, 422, "string_type"),
    ({"ip": None}, 422, "string_type"),
    ({"ip": "203.0.113.7", "direction": "INGRESS"}, 422, "literal_error"),
    ({"ip": "203.0.113.7", "direction": "both\u0000"}, 422, "literal_error"),
    ({"ip": "203.0.113.7", "reason": "ok\nERROR forged log line"}, 422, "string_pattern_mismatch"),
    ({"ip": "203.0.113.7", "reason": "x\r\nSet-Cookie: a=b"}, 422, "string_pattern_mismatch"),
    ({"ip": "203.0.113.7", "reason": "\u001b[31mred"}, 422, "string_pattern_mismatch"),
    ({"ip": "203.0.113.7", "reason": ""}, 422, "string_too_short"),
    ({"ip": "203.0.113.7", "reason": 42}, 422, "string_type"),
    ({"ip": "203.0.113.7", "dry_run": True, "__proto__": {}}, 422, "extra_forbidden"),
    ({"ip": "x" * 65}, 422, "string_too_long"),
    ('{"ip": "203.0.113.7", "ip": "10.0.0.1"}', 422, "never blocks"),  # duplicate keys: the last wins
    ("{" * 3000 + "}" * 3000, 400, "invalid_json"),
    (json.dumps({"ip": "203.0.113.7", "pad": "a" * 8200}), 413, "payload_too_large"),
    ("\ufeff" + json.dumps({"ip": "203.0.113.7"}), 400, "invalid_json"),
    ("", 400, "invalid_json"),
    ("null", 400, "invalid_json"),
    ('"203.0.113.7"', 400, "invalid_json"),
]


@pytest.mark.parametrize(("body", "status", "needle"), HOSTILE_BODIES, ids=[str(i) for i in range(len(HOSTILE_BODIES))])
def test_hostile_bodies(stack: Stack, body: Any, status: int, needle: str) -> None:
    got_status, answer = call("api_create_block.json", TOKEN, body=body)

    assert got_status == status, answer
    if status == 202:
        assert answer["expires_at"] > answer["created_at"]
        return
    assert needle in json.dumps(answer)
    assert_nothing_written(stack)


@pytest.mark.parametrize(
    ("headers", "query", "status", "code"),
    [
        ({}, None, 401, "unauthorized"),
        ({"Authorization": f"Bearer {TOKEN}\r\nX-Admin: 1"}, None, 401, "unauthorized"),
        ({"Authorization": f"Token {TOKEN}"}, None, 401, "unauthorized"),
        ({"Authorization": "Bearer"}, None, 401, "unauthorized"),
        ({"Authorization": f"Bearer {TOKEN} {TOKEN}"}, None, 401, "unauthorized"),
        ({"Authorization": "Bearer ' OR '1'='1"}, None, 401, "unauthorized"),
        ({"Authorization": f"Bearer {TOKEN}"}, {"access_token": TOKEN}, 400, "token_in_url"),
        ({}, {"token": TOKEN}, 400, "token_in_url"),
        ({}, {"API_KEY": "x"}, 400, "token_in_url"),
        ({"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/xml"}, None, 415, "unsupported_media_type"),
    ],
)
def test_hostile_credentials_and_headers(
    stack: Stack, headers: dict[str, str], query: dict[str, str] | None, status: int, code: str
) -> None:
    got_status, body = call("api_create_block.json", None, body={"ip": "203.0.113.7"}, headers=headers, query=query)

    assert (got_status, body["error"]) == (status, code)
    assert TOKEN not in json.dumps(body)
    assert_nothing_written(stack)


def finding(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(event("guardduty_ssh_bruteforce.json"))
    for path, value in changes.items():
        node = raw
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[key]
        if value is ...:
            del node[leaf]
        else:
            node[leaf] = value
    return raw


HOSTILE_FINDINGS = [
    ("no service", finding(detail__service=...), "service"),
    ("service is a string", finding(detail__service="x"), "service"),
    ("action is a list", finding(detail__service__action=[1]), "action"),
    ("severity is text", finding(detail__severity="high"), "severity"),
    ("severity is NaN", finding(detail__severity=float("nan")), "severity"),
    ("detail is null", finding(detail=None), "detail"),
    (
        "remote address is a number",
        finding(detail__service__action__networkConnectionAction__remoteIpDetails__ipAddressV4=3405803783),
        "ipAddressV4",
    ),
]


@pytest.mark.parametrize(("case", "raw", "field"), HOSTILE_FINDINGS, ids=[c[0] for c in HOSTILE_FINDINGS])
def test_hostile_findings_are_refused_by_name_and_write_nothing(
    stack: Stack, case: str, raw: dict[str, Any], field: str
) -> None:
    with pytest.raises(MalformedFinding, match=field):
        tasks.lambda_handler({"task": "from_finding", "event": raw}, FakeLambdaContext())
    assert_nothing_written(stack)


def test_a_finding_fixture_as_sam_local_sends_it(stack: Stack) -> None:
    outcome = tasks.lambda_handler(event("guardduty_c2_activity.json"), FakeLambdaContext())

    assert [(c["address"], c["direction"]) for c in outcome["created"]] == [("198.51.100.77/32", "egress")]


@pytest.mark.parametrize(
    ("case", "address", "reason"),
    [
        ("a private attacker", "10.1.2.3", "private network"),
        ("a mapped address", "::ffff:203.0.113.7", "IPv4-mapped"),
        ("a zone id", "fe80::1%eth0", "only ASCII digits"),
        ("an injected log line", "203.0.113.7\nERROR fake", "only ASCII digits"),
    ],
)
def test_hostile_addresses_in_a_finding_are_skipped_with_the_reason(
    stack: Stack, case: str, address: str, reason: str
) -> None:
    raw = finding(detail__service__action__networkConnectionAction__remoteIpDetails__ipAddressV4=address)

    outcome = tasks.lambda_handler({"task": "from_finding", "event": raw}, FakeLambdaContext())

    assert outcome["created"] == [] and outcome["extended"] == []
    assert len(outcome["skipped"]) == 1 and reason in outcome["skipped"][0]["reason"]
    assert_nothing_written(stack)
