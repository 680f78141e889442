"""The tests' IAM evaluator (tests/support/iam.py) itself: what it allows, what it refuses and why."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import iam
from tests.support.iam_plugin import Report

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/blocks"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:autoblock-block"
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:autoblock-block"
MEMBER_ROLE_ARN = "arn:aws:iam::210987654321:role/autoblock-member"


def statement(index: int = 0, **raw: Any) -> iam.Statement:
    return iam.Statement.of("FunctionRole", "Policy0", index, {"Effect": "Allow", **raw})


def test_a_call_its_statement_allows_is_allowed_and_names_that_statement() -> None:
    # Given
    crud = statement(Action=["dynamodb:GetItem", "dynamodb:PutItem"], Resource=[TABLE, f"{TABLE}/index/*"])

    # When
    decision = iam.evaluate([crud], "dynamodb:PutItem", TABLE, {})

    # Then
    assert decision.allowed
    assert decision.allowing == (crud,)


def test_an_action_or_resource_no_statement_names_is_an_implicit_deny() -> None:
    crud = statement(Action=["dynamodb:GetItem"], Resource=TABLE)

    assert not iam.evaluate([crud], "dynamodb:DeleteItem", TABLE, {}).allowed
    other = "arn:aws:dynamodb:us-east-1:123456789012:table/other"
    refused = iam.evaluate([crud], "dynamodb:GetItem", other, {})
    assert not refused.allowed
    assert refused.near == (crud,)  # named in the message: the action matched, the resource did not


def test_wildcards_in_actions_match_any_case_and_in_resources_one_nacl_only() -> None:
    writes = statement(Action="ec2:*NetworkAclEntry", Resource="arn:*:ec2:*:*:network-acl/acl-1")

    assert iam.evaluate([writes], "ec2:createnetworkaclentry", "arn:aws:ec2:eu-west-1:1:network-acl/acl-1", {}).allowed
    assert not iam.evaluate(
        [writes], "ec2:CreateNetworkAclEntry", "arn:aws:ec2:eu-west-1:1:network-acl/acl-12", {}
    ).allowed
    assert not iam.evaluate([writes], "ec2:DescribeNetworkAcls", "*", {}).allowed


def test_an_explicit_deny_wins_over_any_allow() -> None:
    allow = statement(Action="states:*", Resource="*")
    denying = iam.Statement.of(
        "FunctionRole", "Policy0", 1, {"Effect": "Deny", "Action": "states:Stop*", "Resource": "*"}
    )

    decision = iam.evaluate([allow, denying], "states:StopExecution", f"{MACHINE}:x", {})

    assert not decision.allowed
    assert decision.denying == denying


def test_not_action_grants_everything_but_what_it_names() -> None:
    everything_else = statement(NotAction="iam:*", Resource="*")

    assert iam.evaluate([everything_else], "ec2:DescribeNetworkAcls", "*", {}).allowed
    assert not iam.evaluate([everything_else], "iam:CreateUser", "*", {}).allowed


def test_a_condition_on_a_resource_tag_needs_the_tag_on_the_resource() -> None:
    # Given: writes on managed NACLs only
    managed = statement(
        Action="ec2:CreateNetworkAclEntry",
        Resource="arn:aws:ec2:*:123456789012:network-acl/*",
        Condition={"StringEquals": {"aws:ResourceTag/autoblock:managed": "true"}},
    )
    nacl = "arn:aws:ec2:us-east-1:123456789012:network-acl/acl-1"

    # Then
    assert iam.evaluate(
        [managed], "ec2:CreateNetworkAclEntry", nacl, {"aws:ResourceTag/autoblock:managed": "true"}
    ).allowed
    assert not iam.evaluate(
        [managed], "ec2:CreateNetworkAclEntry", nacl, {"aws:ResourceTag/autoblock:managed": "no"}
    ).allowed
    assert not iam.evaluate([managed], "ec2:CreateNetworkAclEntry", nacl, {}).allowed


def test_string_like_arn_like_and_negated_operators() -> None:
    org = {
        "StringLike": {"aws:PrincipalOrgID": "o-abc*"},
        "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/autoblock-*"},
    }
    context = {"aws:PrincipalOrgID": "o-abc123", "aws:PrincipalArn": "arn:aws:iam::1:role/autoblock-api"}

    assert iam.condition_holds(org, context)
    assert not iam.condition_holds(org, {**context, "aws:PrincipalOrgID": "o-zzz"})
    assert iam.condition_holds({"StringNotEquals": {"aws:PrincipalOrgID": "o-zzz"}}, context)
    assert iam.condition_holds({"StringNotEquals": {"aws:SourceVpc": "vpc-1"}}, context)  # absent: a Not holds


def test_an_operator_the_evaluator_does_not_implement_is_refused_not_guessed() -> None:
    with pytest.raises(iam.UnknownCondition, match="NumericLessThan"):
        iam.condition_holds({"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}}, {})


def test_each_item_of_a_transaction_is_its_own_action_on_its_table() -> None:
    items = [
        {"Put": {"TableName": "blocks", "Item": {}}},
        {"Update": {"TableName": "blocks", "Key": {}}},
        {"Delete": {"TableName": "blocks", "Key": {}}},
        {"ConditionCheck": {"TableName": "blocks", "Key": {}}},
    ]

    asked = iam.requests("DynamoDB", "TransactWriteItems", {"TransactItems": items}, "us-east-1", "123456789012")

    actions = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"]
    assert [(r.action, r.resource) for r in asked] == [(a, TABLE) for a in actions]
    query = iam.requests("DynamoDB", "Query", {"TableName": "blocks", "IndexName": "live"}, "us-east-1", "123456789012")
    assert query == [iam.Request("dynamodb:Query", f"{TABLE}/index/live")]


def test_a_waf_ip_set_call_is_its_action_on_the_set_s_arn_regional_or_global() -> None:
    ids = {"Name": "autoblock-v4-1", "Id": "0f1e2d3c"}

    regional = iam.requests("WAFV2", "UpdateIPSet", {**ids, "Scope": "REGIONAL"}, "eu-west-1", "123456789012")
    cloudfront = iam.requests("WAFV2", "GetIPSet", {**ids, "Scope": "CLOUDFRONT"}, "us-east-1", "123456789012")

    assert regional == [
        iam.Request("wafv2:UpdateIPSet", "arn:aws:wafv2:eu-west-1:123456789012:regional/ipset/autoblock-v4-1/0f1e2d3c")
    ]
    assert cloudfront == [
        iam.Request("wafv2:GetIPSet", "arn:aws:wafv2:us-east-1:123456789012:global/ipset/autoblock-v4-1/0f1e2d3c")
    ]
    with pytest.raises(iam.UnmappedCall, match=r"WAFV2\.ListIPSets"):  # the writer knows its sets: it never lists
        iam.requests("WAFV2", "ListIPSets", {"Scope": "REGIONAL"}, "us-east-1", "123456789012")


def test_an_operation_the_map_does_not_know_is_refused() -> None:
    with pytest.raises(iam.UnmappedCall, match=r"EC2\.DeleteNetworkAcl"):
        iam.requests("EC2", "DeleteNetworkAcl", {"NetworkAclId": "acl-1"}, "us-east-1", "123456789012")


def recorder(**roles: list[dict[str, Any]]) -> iam.Recorder:
    found = {name: iam.Role(name, name, (("Policy0", name, raw),), ()) for name, raw in roles.items()}
    return iam.Recorder(
        refs=lambda: {},
        tags=lambda nacl, account, region: {"autoblock:managed": "true"} if nacl == "acl-managed" else {},
        roles=lambda: found,
        principals=lambda: {"ApiFunction": "ApiFunctionRole"},
        test="tests/unit/test_iam.py::the_test",
    )


def call(
    operation: str, params: dict[str, Any], key: str = "testing", principal: str | None = "ApiFunction"
) -> iam.Call:
    service = {"StopExecution": "SFN", "AssumeRole": "STS"}.get(operation, "EC2")
    return iam.Call(service, operation, params, "us-east-1", key, principal)


def test_a_refused_call_is_named_with_its_function_action_arn_and_the_missing_statement() -> None:
    # Given: the API may stop executions of its own state machine only
    api = recorder(
        ApiFunctionRole=[{"Effect": "Allow", "Action": "states:StopExecution", "Resource": f"{EXECUTION}:*"}]
    )
    other = "arn:aws:states:us-east-1:123456789012:execution:other-machine:1"

    # When
    api.observe(call("StopExecution", {"executionArn": f"{EXECUTION}:1"}))
    api.observe(call("StopExecution", {"executionArn": other}))

    # Then
    (refused,) = api.take("tests/unit/test_iam.py::the_test")
    assert refused.startswith(
        f"SFN.StopExecution by ApiFunction (role ApiFunctionRole): states:StopExecution on {other}"
    )
    assert '"Action": "states:StopExecution", "Resource": "' + other in refused
    assert list(api.used) == ["ApiFunctionRole/Policy0/0"]


def test_a_call_made_by_no_function_is_not_evaluated() -> None:
    api = recorder(ApiFunctionRole=[])

    api.observe(call("DeleteNetworkAcl", {"NetworkAclId": "acl-1"}, principal=None))

    assert api.take("tests/unit/test_iam.py::the_test") == []
    assert api.evaluated == 0


def test_credentials_an_assume_role_returned_act_as_the_member_role_with_its_tag_condition() -> None:
    # Given: the API assumed the member role; the member role writes tagged NACLs only
    member = [
        {
            "Effect": "Allow",
            "Action": ["ec2:CreateNetworkAclEntry", "ec2:DeleteNetworkAclEntry"],
            "Resource": "arn:aws:ec2:*:210987654321:network-acl/*",
            "Condition": {"StringEquals": {"aws:ResourceTag/autoblock:managed": "true"}},
        }
    ]
    api = recorder(
        ApiFunctionRole=[{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": MEMBER_ROLE_ARN}],
        MemberRole=member,
    )
    assume = call("AssumeRole", {"RoleArn": MEMBER_ROLE_ARN, "RoleSessionName": "autoblock"})
    api.observe(assume)
    api.answered(assume, {"Credentials": {"AccessKeyId": "ASIAMEMBER"}})

    # When: entries in a managed and in an untagged NACL, with the member's credentials
    api.observe(call("CreateNetworkAclEntry", {"NetworkAclId": "acl-managed"}, key="ASIAMEMBER"))
    api.observe(call("CreateNetworkAclEntry", {"NetworkAclId": "acl-foreign"}, key="ASIAMEMBER"))

    # Then: the untagged one is refused, in the member account, as the assumed role
    (refused,) = api.take("tests/unit/test_iam.py::the_test")
    assert refused.startswith(
        f"EC2.CreateNetworkAclEntry by {MEMBER_ROLE_ARN} (role MemberRole): ec2:CreateNetworkAclEntry on "
        "arn:aws:ec2:us-east-1:210987654321:network-acl/acl-foreign is not allowed"
    )
    assert set(api.used) == {"ApiFunctionRole/Policy0/0", "MemberRole/Policy0/0"}


def test_the_templates_own_policies_resolve_against_the_stack() -> None:
    # Given: the API's role as SAM creates it, resolved with the emulated stack's names
    refs = {
        "AWS::Partition": "aws",
        "AWS::Region": "us-east-1",
        "AWS::AccountId": "123456789012",
        "AWS::StackName": "autoblock",
        "BlocksTable": "blocks",
        "BlocksTable.Arn": TABLE,
        "ApiTokenSecret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:token-AbCdEf",
        "ExistingTokenSecretArn": "",
        "Condition:GenerateToken": True,
        "Condition:HasOwnNacls": True,
        "BlockStateMachine": MACHINE,
        "BlockStateMachine.Name": "autoblock-block",
        "NetworkAclIds": ["acl-1", "acl-2"],
    }
    api = iam.statements(iam.roles()["ApiFunctionRole"], refs)
    execution = "arn:aws:states:us-east-1:123456789012:execution:autoblock-block:b1"

    # Then
    assert iam.evaluate(api, "states:StopExecution", execution, {}).allowed
    assert iam.evaluate(
        api, "ec2:DeleteNetworkAclEntry", "arn:aws:ec2:us-east-1:123456789012:network-acl/acl-2", {}
    ).allowed
    assert not iam.evaluate(
        api, "ec2:DeleteNetworkAclEntry", "arn:aws:ec2:us-east-1:123456789012:network-acl/acl-3", {}
    ).allowed
    assert iam.evaluate(api, "dynamodb:Query", f"{TABLE}/index/live", {}).allowed
    assert not iam.evaluate(api, "states:StopExecution", execution.replace("autoblock-block", "other"), {}).allowed


def test_a_whole_run_fails_on_an_unused_statement_unless_its_sid_is_justified() -> None:
    # Given: every statement of the template's roles used, but one (and the justified LogDelivery)
    every = {s.key: "t" for s in iam.catalog() if s.sid != "LogDelivery"}
    dropped = "TaskFunctionRole/TaskFunctionRolePolicy2/0"
    used = {k: v for k, v in every.items() if k != dropped}

    # Then: the unjustified one fails a complete run, and only it; a partial run enforces nothing
    (failure,) = Report(used, {}, [], 1, complete=True).failures()
    assert failure.startswith("unused and not justified: TaskFunctionRole ← TaskFunctionRolePolicy2 #0")
    assert Report(used, {}, [], 1, complete=False).failures() == []
    assert Report(every, {}, [], 1, complete=True).failures() == []
