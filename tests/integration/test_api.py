"""The API handler with the events/ fixtures: authentication, bad input, reads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from autoblock_local.invoke import call, event, settled
from tests.integration.conftest import TOKEN, Stack
from tests.support.table import assert_nothing_written

VALID = {"ip": "203.0.113.7", "duration": 60}


@pytest.mark.parametrize(
    ("token", "query"),
    [(None, None), ("wrong-token", None), ("", None), (TOKEN[:-1], None), (TOKEN + "x", None)],
    ids=["missing", "wrong", "empty", "prefix", "longer"],
)
def test_requests_without_the_right_bearer_token_get_401(stack: Stack, token: str | None, query: Any) -> None:
    status, body = call("api_create_block.json", token, body=VALID)

    assert status == 401
    assert body == {"error": "unauthorized", "message": "missing or invalid bearer token"}
    assert_nothing_written(stack)


def test_the_token_is_read_from_the_authorization_header_only(stack: Stack) -> None:
    status, body = call("api_create_block.json", None, body=VALID, query={"token": TOKEN})

    assert status == 400
    assert body["error"] == "token_in_url"
    assert_nothing_written(stack)


def test_a_basic_scheme_is_not_a_bearer_token(stack: Stack) -> None:
    status, _ = call("api_list_blocks.json", None, headers={"Authorization": f"Basic {TOKEN}"})
    assert status == 401


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"ip": "203.0.113.256"}, 400, "'203.0.113.256' is not a valid IPv4 or IPv6 address or CIDR"),
        ({"ip": "198.51.100.5/28"}, 400, "host bits set; the network is 198.51.100.0/28"),
        ({"ip": "10.0.0.8"}, 422, "overlaps 10.0.0.0/8 (private network), which autoblock never blocks"),
        ({"ip": "203.0.0.0/16"}, 422, "broader than /24"),
        ({"ip": "2001:db8::/32"}, 422, "broader than /64"),
        ({"ip": "203.0.113.7", "duration": 0}, 400, "duration must be between 1 and 604800 seconds"),
        ({"ip": "203.0.113.7", "duration": -5}, 400, "duration must be between 1 and 604800 seconds"),
        ({"ip": "203.0.113.7", "duration": 604801}, 400, "duration must be between 1 and 604800 seconds"),
        ({"ip": "203.0.113.7", "duration": "60"}, 422, "int_type"),
        ({"ip": "203.0.113.7", "duration": 1.5}, 422, "int_type"),
        ({"ip": "203.0.113.7", "duration": True}, 422, "int_type"),
        ({"ip": 2130706433}, 422, "string_type"),
        ({"ip": "203.0.113.7", "direction": "sideways"}, 422, "literal_error"),
        ({"ip": "203.0.113.7", "colour": "red"}, 422, "extra_forbidden"),
        ({"duration": 60}, 422, "missing"),
        ({"ip": "203.0.113.7", "reason": "x\r\nX-Injected: 1"}, 422, "string_pattern_mismatch"),
        ({"ip": "203.0.113.7", "reason": "r" * 257}, 422, "string_too_long"),
    ],
)
def test_bad_input_gets_a_4xx_that_says_what_is_wrong_and_writes_nothing(
    stack: Stack, body: dict[str, Any], status: int, needle: str
) -> None:
    got_status, got = call("api_create_block.json", TOKEN, body=body)

    assert got_status == status
    assert needle in json.dumps(got)
    # One error shape for every 4xx: a code and a sentence, and for a body that does not match the
    # model, each field at fault with the kind of fault
    assert isinstance(got["error"], str) and isinstance(got["message"], str) and got["message"]
    if got["error"] == "invalid_request":
        assert set(got) == {"error", "message", "fields"}
        assert all(set(f) == {"field", "type", "message"} for f in got["fields"])
        assert needle in {f["type"] for f in got["fields"]}
    else:
        assert set(got) == {"error", "message"}
    assert_nothing_written(stack)


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        ("{not json", None, 400, "invalid_json"),
        ("[1, 2]", None, 400, "invalid_json"),
        ("[" * 5000 + "]" * 5000, {"Content-Type": "application/json"}, 413, "payload_too_large"),
        ("[" * 4000 + "]" * 4000, None, 400, "invalid_json"),
        (json.dumps({"ip": "203.0.113.7", "reason": "a" * 9000}), None, 413, "payload_too_large"),
        (json.dumps(VALID), {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (json.dumps(VALID), {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        (None, None, 400, "invalid_json"),
    ],
    ids=["not-json", "not-an-object", "over-8KiB", "deep", "big-reason", "text-plain", "form", "no-body"],
)
def test_malformed_bodies_are_refused_before_validation(
    stack: Stack, body: str | None, headers: dict[str, str] | None, status: int, error: str
) -> None:
    got_status, got = call("api_create_block.json", TOKEN, body=body, headers=headers)

    assert (got_status, got["error"]) == (status, error)
    assert_nothing_written(stack)


@pytest.mark.parametrize("block_id", ["0123456789abcdef0123456789abcdef", "nope", "../../etc/passwd", "A" * 64])
@pytest.mark.parametrize("fixture", ["api_get_block.json", "api_delete_block.json"])
def test_an_unknown_block_id_is_404(stack: Stack, fixture: str, block_id: str) -> None:
    status, body = call(fixture, TOKEN, block_id=block_id)

    assert status == 404
    assert body["error"] == "not_found"
    assert_nothing_written(stack)


def test_the_fixtures_as_sam_local_would_send_them(stack: Stack) -> None:
    # events/api_create_block.json exactly as committed, with the token filled in
    status, created = call("api_create_block.json", TOKEN)
    assert status == 202, created
    assert (created["ip"], created["direction"], created["reason"]) == (
        "203.0.113.7/32",
        "ingress",
        "ssh brute force (elastalert: ssh_bruteforce)",
    )
    status, v6 = call("api_create_block_ipv6.json", TOKEN)
    assert status == 202, v6
    assert (v6["ip"], v6["direction"], len(v6["rules"])) == ("2001:db8::7/128", "both", 4)

    status, listed = call("api_list_blocks.json", TOKEN)
    assert status == 200
    assert sorted(b["id"] for b in listed["blocks"]) == sorted([created["id"], v6["id"]])
    shown = next(b for b in listed["blocks"] if b["id"] == created["id"])
    assert {"ip", "direction", "rules", "state", "reason", "source", "created_at", "expires_at"} <= shown.keys()
    assert shown["source"].startswith("api:")

    assert created["state"] == "pending" and len(created["rules"]) == 2  # answered at once, numbers taken
    one = settled(created["id"])
    assert (one["id"], one["state"], one["rules"]) == (created["id"], "active", created["rules"])

    status, gone = call("api_delete_block.json", TOKEN, block_id=created["id"])
    assert (status, gone["state"]) == (200, "unblocked")
    status, listed = call("api_list_blocks.json", TOKEN)
    assert [b["id"] for b in listed["blocks"]] == [v6["id"]]
    assert event("api_create_block.json")["headers"]["Authorization"] == "Bearer REPLACE_WITH_YOUR_TOKEN"


def test_the_token_is_reread_after_its_cache_expires(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import boto3

    from autoblock.dal.secrets import TOKEN_CACHE_SECONDS
    from autoblock.handlers import wiring

    assert call("api_list_blocks.json", TOKEN)[0] == 200
    boto3.client("secretsmanager").put_secret_value(SecretId="autoblock-token", SecretString="rotated-token-value")
    assert call("api_list_blocks.json", TOKEN)[0] == 200  # still the cached token
    # five minutes on
    monkeypatch.setattr(wiring.secret(), "clock", lambda: time.monotonic() + TOKEN_CACHE_SECONDS + 1)

    assert call("api_list_blocks.json", TOKEN)[0] == 401
    assert call("api_list_blocks.json", "rotated-token-value")[0] == 200
