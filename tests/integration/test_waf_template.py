"""AWS WAF in the template, as CloudFormation creates it: template.yaml after the SAM transform,
its Conditions and intrinsic functions evaluated under the parameter values a user gives."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support import iam

TEMPLATE = iam.transformed()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
NO_VALUE = object()
STACK = "autoblock"
SCOPES = ("REGIONAL", "CLOUDFRONT")
ALB = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:loadbalancer/app/web/0123456789abcdef"
STAGE = "arn:aws:apigateway:eu-west-1::/restapis/a1b2c3d4e5/stages/v1"


def _params(**given: Any) -> dict[str, Any]:
    """The template's defaults under ``given``; a CommaDelimitedList is a list."""
    values: dict[str, Any] = {}
    for name, spec in TEMPLATE["Parameters"].items():
        default = spec.get("Default", "")
        values[name] = str(default).split(",") if spec["Type"] == "CommaDelimitedList" else default
    values.update(given)
    return values


def _attribute(resource: str, attribute: str) -> str:
    """What CloudFormation returns for a WAF resource's Arn or Id (a fake id, its logical id)."""
    kind = RESOURCES[resource]["Type"].rsplit("::", 1)[1].lower()
    if attribute == "Id":
        return f"id-{resource}"
    return f"arn:aws:wafv2:eu-west-1:111122223333:regional/{kind}/{resource}/id-{resource}"


def _value(node: Any, refs: dict[str, Any]) -> Any:
    """An intrinsic function's value; ``NO_VALUE`` for AWS::NoValue, dropped from lists."""
    if isinstance(node, list):
        return [v for v in (_value(n, refs) for n in node) if v is not NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((fn, arg),) = node.items()
        if fn == "Ref":
            if arg == "AWS::NoValue":
                return NO_VALUE
            return refs.get(arg, f"ref-{arg}")  # a resource's Ref: its name or id
        if fn == "Condition":
            return _holds(arg, refs)
        if fn == "Fn::GetAtt":
            resource, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return _attribute(resource, attribute)
        if fn == "Fn::If":
            condition, yes, no = arg
            return _value(yes if _holds(condition, refs) else no, refs)
        if fn == "Fn::Join":
            return arg[0].join(str(p) for p in _value(arg[1], refs))
        if fn == "Fn::Split":
            return str(_value(arg[1], refs)).split(arg[0])
        if fn == "Fn::Select":
            return _value(arg[1], refs)[int(arg[0])]
        if fn == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], _value(arg[1], refs))
            scope = {**refs, **variables}
            return re.sub(r"\$\{([A-Za-z0-9_:.]+)\}", lambda m: str(_value(_sub_ref(m.group(1)), scope)), text)
        if fn == "Fn::Equals":
            return str(_value(arg[0], refs)) == str(_value(arg[1], refs))
        if fn == "Fn::Not":
            return not _value(arg[0], refs)
        if fn == "Fn::And":
            return all(_value(a, refs) for a in arg)
        if fn == "Fn::Or":
            return any(_value(a, refs) for a in arg)
        if fn == "Fn::EachMemberEquals":
            return all(str(v) == str(_value(arg[1], refs)) for v in _value(arg[0], refs))
    return {k: v for k, v in ((k, _value(v, refs)) for k, v in node.items()) if v is not NO_VALUE}


def _sub_ref(name: str) -> dict[str, Any]:
    return {"Fn::GetAtt": name.split(".", 1)} if "." in name else {"Ref": name}


def _holds(condition: str, refs: dict[str, Any]) -> bool:
    return bool(_value(TEMPLATE["Conditions"][condition], refs))


def _refs(**given: Any) -> dict[str, Any]:
    pseudo = {
        "AWS::StackName": STACK,
        "AWS::Region": "eu-west-1",
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }
    return {**_params(**given), **pseudo, "AWS::AccountId": "111122223333"}


def _stack(**given: Any) -> dict[str, dict[str, Any]]:
    """The resources CloudFormation creates under these parameter values, their properties resolved."""
    refs = _refs(**given)
    return {
        name: {**r, "Properties": _value(r.get("Properties", {}), refs)}
        for name, r in RESOURCES.items()
        if "Condition" not in r or _holds(r["Condition"], refs)
    }


def _of_type(stack: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in stack.items() if r["Type"] == kind}


def _roles() -> list[iam.Role]:
    """The stack's roles (the member accounts' role is another template's)."""
    return [role for role in iam.roles().values() if role.name in RESOURCES]


def _ip_sets(stack: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return _of_type(stack, "AWS::WAFv2::IPSet")


def test_with_waf_off_the_stack_has_nothing_of_waf() -> None:
    stack = _stack()
    assert TEMPLATE["Parameters"]["WafScope"]["Default"] == "NONE"
    assert not [name for name, r in stack.items() if r["Type"].startswith("AWS::WAFv2::")]
    for function in _of_type(stack, "AWS::Lambda::Function").values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert (variables["WAF_SCOPE"], variables["WAF_IP_SETS"]) == ("NONE", "")
        assert (variables["DEFAULT_TARGETS"], variables["GUARDDUTY_TARGETS"]) == ("nacl", "nacl")
    outputs = {
        name for name, o in TEMPLATE["Outputs"].items() if "Condition" not in o or _holds(o["Condition"], _refs())
    }
    assert not outputs & {"WafRuleGroupArn", "WafIpSetArns", "WebAclArn"}


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("per_family", [1, 2, 3, 4, 5])
def test_waf_on_creates_the_sets_asked_for_per_family_in_its_scope(scope: str, per_family: int) -> None:
    sets = _ip_sets(_stack(WafScope=scope, WafIpSetsPerFamily=per_family))

    expected = {f"WafIpSetV{f}x{n}": (f"{STACK}-v{f}-{n}", f"IPV{f}") for f in "46" for n in range(1, per_family + 1)}
    assert {
        name: (s["Properties"]["Name"], s["Properties"]["IPAddressVersion"]) for name, s in sets.items()
    } == expected
    for s in sets.values():
        assert (s["Properties"]["Scope"], s["Properties"]["Addresses"]) == (scope, [])


@pytest.mark.parametrize("per_family", [1, 3, 5])
def test_the_functions_may_read_and_write_the_stack_s_own_ip_sets_and_nothing_else_of_waf(per_family: int) -> None:
    stack = _stack(WafScope="REGIONAL", WafIpSetsPerFamily=per_family)
    own = sorted(_attribute(name, "Arn") for name in _ip_sets(stack))
    refs = _refs(WafScope="REGIONAL", WafIpSetsPerFamily=per_family)

    granted: dict[str, list[tuple[list[str], list[str]]]] = {}
    for role in _roles():
        for _, _, raw in role.policies:
            for statement in _value(raw, refs):
                actions = statement.get("Action")
                actions = actions if isinstance(actions, list) else [actions]
                if any(a.lower().startswith("wafv2:") or a == "*" for a in actions):
                    granted.setdefault(role.source, []).append((actions, sorted(statement["Resource"])))

    assert granted == {
        function: [(["wafv2:GetIPSet", "wafv2:UpdateIPSet"], own)]
        for function in ("ApiFunction", "TaskFunction", "SweeperFunction")
    }
    # With WAF off, no role has it
    off = _refs()
    assert not [
        s
        for role in _roles()
        for _, _, raw in role.policies
        for s in _value(raw, off)
        if "wafv2" in str(s.get("Action"))
    ]


def _entries(value: str) -> list[tuple[str, ...]]:
    """WAF_IP_SETS as the contract reads it: ``<family>:<name>:<id>`` entries, empty ones ignored."""
    return [tuple(entry.split(":")) for entry in value.split(",") if entry]


@pytest.mark.parametrize("per_family", [1, 2, 5])
def test_every_function_is_told_each_ip_set_as_family_name_and_id(per_family: int) -> None:
    stack = _stack(WafScope="CLOUDFRONT", WafIpSetsPerFamily=per_family, DefaultTargets="nacl,waf")
    sets = _ip_sets(stack)
    expected = sorted((name[len("WafIpSetV")], s["Properties"]["Name"], f"id-{name}") for name, s in sets.items())

    for function in _of_type(stack, "AWS::Lambda::Function").values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert sorted(_entries(variables["WAF_IP_SETS"])) == expected
        assert variables["WAF_IP_SETS"].endswith(",")
        assert (variables["WAF_SCOPE"], variables["DEFAULT_TARGETS"]) == ("CLOUDFRONT", "nacl,waf")
    assert len(expected) == 2 * per_family


@pytest.mark.parametrize("per_family", [1, 2, 5])
def test_the_rule_group_blocks_every_address_of_every_set(per_family: int) -> None:
    stack = _stack(WafScope="REGIONAL", WafIpSetsPerFamily=per_family)
    (group,) = _of_type(stack, "AWS::WAFv2::RuleGroup").values()
    rules = group["Properties"]["Rules"]

    referenced = sorted(r["Statement"]["IPSetReferenceStatement"]["Arn"] for r in rules)
    assert referenced == sorted(_attribute(name, "Arn") for name in _ip_sets(stack))
    assert all(r["Action"] == {"Block": {}} for r in rules)
    assert len({r["Priority"] for r in rules}) == len({r["Name"] for r in rules}) == len(rules)
    assert group["Properties"]["Scope"] == "REGIONAL"
    # Capacity is immutable: it holds the 10 sets of WafIpSetsPerFamily=5 (an IP set reference is 1 WCU)
    assert group["Properties"]["Capacity"] >= 10
    assert group["Properties"]["VisibilityConfig"]["CloudWatchMetricsEnabled"] is True


def test_the_outputs_name_the_rule_group_and_the_sets() -> None:
    refs = _refs(WafScope="REGIONAL", WafIpSetsPerFamily=2)
    waf = ("WafRuleGroupArn", "WafIpSetArns", "WebAclArn")
    outputs = {
        n: _value(TEMPLATE["Outputs"][n]["Value"], refs)
        for n in waf
        if _holds(TEMPLATE["Outputs"][n]["Condition"], refs)
    }
    assert outputs["WafRuleGroupArn"] == _attribute("WafRuleGroup", "Arn")
    assert sorted(outputs["WafIpSetArns"].split(",")) == sorted(
        _attribute(name, "Arn") for name in _ip_sets(_stack(WafScope="REGIONAL", WafIpSetsPerFamily=2))
    )
    assert "WebAclArn" not in outputs


def test_without_protected_resources_the_stack_creates_no_web_acl() -> None:
    stack = _stack(WafScope="REGIONAL")
    assert _of_type(stack, "AWS::WAFv2::RuleGroup")
    assert not _of_type(stack, "AWS::WAFv2::WebACL")
    assert not _of_type(stack, "AWS::WAFv2::WebACLAssociation")


@pytest.mark.parametrize("arns", [[ALB], [ALB, STAGE], [f"{ALB}{i}" for i in range(10)]])
def test_protected_resources_get_the_stack_s_own_web_acl_holding_the_rule_group(arns: list[str]) -> None:
    stack = _stack(WafScope="REGIONAL", ProtectedResourceArns=arns)
    (acl,) = _of_type(stack, "AWS::WAFv2::WebACL").values()
    props = acl["Properties"]

    assert props["DefaultAction"] == {"Allow": {}}
    (rule,) = props["Rules"]
    assert rule["Statement"] == {"RuleGroupReferenceStatement": {"Arn": _attribute("WafRuleGroup", "Arn")}}
    assert rule["OverrideAction"] == {"None": {}}
    associations = _of_type(stack, "AWS::WAFv2::WebACLAssociation").values()
    assert sorted(a["Properties"]["ResourceArn"] for a in associations) == sorted(arns)
    # Every association is to the web ACL the stack created, never to one it did not
    assert {a["Properties"]["WebACLArn"] for a in associations} == {_attribute("WebAcl", "Arn")}
    assert _value(TEMPLATE["Outputs"]["WebAclArn"]["Value"], _refs()) == _attribute("WebAcl", "Arn")


def _refused(region: str = "eu-west-1", **given: Any) -> list[str]:
    """The Rules' assertions CloudFormation would refuse these parameter values with."""
    refs = {**_refs(**{"NetworkAclIds": ["acl-0123456789abcdef0"], **given}), "AWS::Region": region}
    refused = []
    for rule in TEMPLATE["Rules"].values():
        if "RuleCondition" in rule and not _value(rule["RuleCondition"], refs):
            continue
        refused += [a["AssertDescription"] for a in rule["Assertions"] if not _value(a["Assert"], refs)]
    return refused


def test_cloudfront_is_refused_outside_us_east_1_and_with_protected_resources() -> None:
    assert _refused("us-east-1", WafScope="CLOUDFRONT") == []
    (refused,) = _refused("eu-west-1", WafScope="CLOUDFRONT")
    assert "us-east-1" in refused
    (refused,) = _refused("us-east-1", WafScope="CLOUDFRONT", ProtectedResourceArns=[ALB])
    assert "ProtectedResourceArns" in refused
    assert _refused("eu-west-1", WafScope="REGIONAL", ProtectedResourceArns=[ALB]) == []


@pytest.mark.parametrize(
    "given",
    [
        {"DefaultTargets": "waf"},
        {"DefaultTargets": "nacl,waf"},
        {"GuardDutyTargets": "waf"},
        {"WhenFull": "waf"},
        {"ProtectedResourceArns": [ALB]},
    ],
)
def test_waf_targets_without_waf_are_refused(given: dict[str, Any]) -> None:
    (refused,) = _refused(**given)
    assert "WafScope" in refused
    assert _refused(WafScope="REGIONAL", **given) == []


def test_the_waf_parameters_and_their_defaults() -> None:
    params = TEMPLATE["Parameters"]
    assert params["WafScope"]["AllowedValues"] == ["NONE", "REGIONAL", "CLOUDFRONT"]
    assert params["WafIpSetsPerFamily"]["AllowedValues"] == [1, 2, 3, 4, 5]
    assert params["WafIpSetsPerFamily"]["Default"] == 1
    assert params["ProtectedResourceArns"]["Type"] == "CommaDelimitedList"
    for name in ("DefaultTargets", "GuardDutyTargets"):
        assert (params[name]["Default"], params[name]["AllowedValues"]) == ("nacl", ["nacl", "waf", "nacl,waf"])
    assert "waf" in params["WhenFull"]["AllowedValues"]
