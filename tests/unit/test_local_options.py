"""The local stack's --parameter-overrides, against template.yaml's own constraints, and its view."""

from __future__ import annotations

import pytest

from autoblock.models import BlockView, RuleView
from autoblock_local import overrides, view
from autoblock_local.emulator import load_template

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


def test_the_line_view_prints_what_appeared_changed_and_went_away() -> None:
    first = view.Snapshot([_block("a"), _block("b")], {}, 0)
    second = view.Snapshot([_block("b", state="releasing"), _block("c")], {}, 1)

    lines = view.changes(first, second, lambda block_id: "expired")

    assert [line.split()[0] for line in lines] == ["releasing", "active", "expired"]
    assert [line.split()[-1] for line in lines] == ["b", "c", "a"]
    assert view.changes(second, second, lambda _: "x") == []
