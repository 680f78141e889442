"""Organization mode's templates: template.yaml's MemberNetworkAclIds pattern, member-role.yaml (the role
each member account gives the administrator's functions) and region-forwarder.yaml (another Region's
findings to the home Region), read as CloudFormation reads them and deployed on moto.

moto creates what the templates declare and keeps accounts apart (credentials from AssumeRole into
another account act in that account), but evaluates no IAM policy: the trust and permissions are
asserted as written, condition by condition.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.decode import decode

from tests.integration.conftest import ACCOUNT, ROOT, load_template

if TYPE_CHECKING:
    from mypy_boto3_cloudformation.type_defs import ParameterTypeDef

TEMPLATE = load_template()
PARAMETERS = TEMPLATE["Parameters"]
MEMBER = "111122223333"
ORGANIZATION = "o-a1b2c3d4e5"
HOME, OTHER = "us-east-1", "eu-west-1"
NACL = "acl-0123456789abcdef0"

# moto's CloudFormation creates no AWS::SQS::QueuePolicy (the forwarder's is asserted as written)
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto:UserWarning")


def _decoded(name: str) -> dict[str, Any]:
    template, matches = decode(str(ROOT / name))
    assert not matches, matches
    return dict(template)


MEMBER_ROLE = _decoded("member-role.yaml")
FORWARDER = _decoded("region-forwarder.yaml")


@pytest.mark.parametrize(
    "value",
    [
        "",
        f"{MEMBER}:us-east-1:{NACL}",
        f"{MEMBER}:eu-west-1:acl-01234567,{ACCOUNT}:ap-southeast-2:{NACL}",
        f"{MEMBER}:us-gov-west-1:{NACL}",
        f"{MEMBER}:cn-northwest-1:{NACL}",
        f"{MEMBER}:eusc-de-east-1:{NACL}",
        f"{MEMBER}:ap-southeast-7:acl-0123456789abcdef0",
    ],
)
def test_member_nacl_ids_accepts_empty_and_account_region_acl_triples(value: str) -> None:
    assert re.fullmatch(PARAMETERS["MemberNetworkAclIds"]["AllowedPattern"], value)


@pytest.mark.parametrize(
    "value",
    [
        "123:us-east-1:acl-1",
        f"{MEMBER}:{NACL}",  # no Region
        f"us-east-1:{NACL}",  # no account
        NACL,
        f"{MEMBER}:us-east-1:{NACL}, {MEMBER}:us-west-2:{NACL}",  # a space
        f" {MEMBER}:us-east-1:{NACL}",
        f"{MEMBER}:us-east-1:{NACL},",  # a trailing comma
        f"{MEMBER}:us-east-1:{NACL},,{MEMBER}:us-west-2:{NACL}",
        f"{MEMBER}:us-east-1:{NACL};{MEMBER}:us-west-2:{NACL}",
        f"1{MEMBER}:us-east-1:{NACL}",  # 13 digits
        f"{MEMBER}:US-EAST-1:{NACL}",
        f"{MEMBER}:us-east:{NACL}",  # no Region number
        f"{MEMBER}:useast1:{NACL}",
        f"{MEMBER}:us-east-1:acl-0123456789ABCDEF0",
        f"{MEMBER}:us-east-1:acl-0123456",  # 7 hex digits
        f"{MEMBER}:us-east-1:acl-0123456789abcdef01",  # 18
        f"{MEMBER}:us-east-1:sg-0123456789abcdef0",
        f"{MEMBER}:us-east-1:{NACL}:extra",
    ],
)
def test_member_nacl_ids_refuses_a_malformed_triple(value: str) -> None:
    assert not re.fullmatch(PARAMETERS["MemberNetworkAclIds"]["AllowedPattern"], value)


def test_cloudformation_s_own_check_of_the_pattern_refuses_a_malformed_default() -> None:
    # cfn-lint checks a parameter's Default against its AllowedPattern, as CloudFormation checks a value
    def matches(default: str) -> list[str]:
        spec = {**PARAMETERS["MemberNetworkAclIds"], "Default": default}
        template = {
            "Parameters": {"MemberNetworkAclIds": spec},
            "Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {"Ids": {"Value": {"Ref": "MemberNetworkAclIds"}}},
        }
        return [m.rule.id for m in lint(json.dumps(template), ManualArgs(regions=[HOME]))]

    assert matches("123:us-east-1:acl-1") == ["E2015"]
    assert matches(f"{MEMBER}:us-east-1:{NACL}") == []


def test_own_nacls_may_be_empty_only_beside_member_nacls() -> None:
    own = PARAMETERS["NetworkAclIds"]
    assert (own["Type"], own["Default"]) == ("CommaDelimitedList", "")
    assert all(re.fullmatch(own["AllowedPattern"], v) for v in ("", NACL, "acl-01234567"))
    assert not any(re.fullmatch(own["AllowedPattern"], v) for v in ("acl-1", f" {NACL}", f"{MEMBER}:us-east-1:{NACL}"))
    (assertion,) = TEMPLATE["Rules"]["OneNaclAtLeast"]["Assertions"]
    assert assertion["Assert"] == {
        "Fn::Or": [
            {"Fn::Not": [{"Fn::EachMemberEquals": [{"Ref": "NetworkAclIds"}, ""]}]},
            {"Fn::Not": [{"Fn::Equals": [{"Ref": "MemberNetworkAclIds"}, ""]}]},
        ]
    }
    conditions = TEMPLATE["Conditions"]
    assert conditions["HasOwnNacls"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "NetworkAclIds"}]}, ""]}]
    }
    assert conditions["OrganizationMode"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "MemberNetworkAclIds"}, ""]}]}


def test_organization_parameters_reach_every_function_as_the_code_reads_them() -> None:
    assert (PARAMETERS["MemberNetworkAclIds"]["Type"], PARAMETERS["MemberNetworkAclIds"]["Default"]) == ("String", "")
    assert PARAMETERS["MemberRoleName"]["Default"] == MEMBER_ROLE["Parameters"]["MemberRoleName"]["Default"]
    assert (
        PARAMETERS["MemberRoleName"]["AllowedPattern"] == MEMBER_ROLE["Parameters"]["MemberRoleName"]["AllowedPattern"]
    )
    assert (PARAMETERS["NaclFromFinding"]["Default"], PARAMETERS["NaclFromFinding"]["AllowedValues"]) == (
        "false",
        ["true", "false"],
    )
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert {
        "MEMBER_NACL_IDS": {"Ref": "MemberNetworkAclIds"},
        "MEMBER_ROLE_NAME": {"Ref": "MemberRoleName"},
        "NACL_FROM_FINDING": {"Ref": "NaclFromFinding"},
        "HOME_ACCOUNT_ID": {"Ref": "AWS::AccountId"},
        "HOME_REGION": {"Ref": "AWS::Region"},
        "PARTITION": {"Ref": "AWS::Partition"},
    }.items() <= env.items()
    (group,) = [
        g
        for g in TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
        if g["Label"]["default"] == "Organization"
    ]
    assert group["Parameters"] == ["MemberNetworkAclIds", "MemberRoleName", "NaclFromFinding"]


def test_the_functions_may_assume_the_member_role_in_organization_mode_only() -> None:
    functions = {n: r for n, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    expected = {
        "Fn::If": [
            "OrganizationMode",
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "sts:AssumeRole",
                        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${MemberRoleName}"},
                    }
                ]
            },
            {"Ref": "AWS::NoValue"},
        ]
    }
    for name, function in functions.items():
        conditional = [p for p in function["Properties"]["Policies"] if "Fn::If" in p]
        assert [p for p in conditional if p["Fn::If"][0] == "OrganizationMode"] == [expected], name
    assert "sts:AssumeRole" not in json.dumps(TEMPLATE["Resources"]["NaclWritePolicy"])


def test_the_member_role_trusts_only_the_administrator_stack_s_function_roles() -> None:
    assert set(MEMBER_ROLE["Resources"]) == {"MemberRole"}
    role = MEMBER_ROLE["Resources"]["MemberRole"]
    assert role["Type"] == "AWS::IAM::Role"
    assert role["Properties"]["RoleName"] == {"Ref": "MemberRoleName"}
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AdministratorAccountId}:root"}}
    assert trust["Action"] == "sts:AssumeRole"
    function_roles = {
        "aws:PrincipalArn": {
            "Fn::Sub": "arn:${AWS::Partition}:iam::${AdministratorAccountId}:role/${AdministratorStackName}-*FunctionRole-*"
        }
    }
    assert trust["Condition"] == {
        "Fn::If": [
            "InOrganization",
            {"ArnLike": function_roles, "StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}},
            {"ArnLike": function_roles},
        ]
    }
    assert MEMBER_ROLE["Conditions"]["InOrganization"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "OrganizationId"}, ""]}]}
    params = MEMBER_ROLE["Parameters"]
    assert re.fullmatch(params["AdministratorAccountId"]["AllowedPattern"], ACCOUNT)
    assert not re.fullmatch(params["AdministratorAccountId"]["AllowedPattern"], "12345")
    assert [
        v
        for v in ("", ORGANIZATION, "o-abc", "r-a1b2", "O-A1B2C3D4E5")
        if re.fullmatch(params["OrganizationId"]["AllowedPattern"], v)
    ] == ["", ORGANIZATION]


def test_the_trusted_name_pattern_matches_the_roles_sam_gives_the_stack_s_functions_and_no_other() -> None:
    # SAM names a function's generated role <stack>-<LogicalId>Role-<suffix>
    pattern = f"arn:aws:iam::{ACCOUNT}:role/autoblock-*FunctionRole-*"
    functions = [n for n, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]
    assert sorted(functions) == ["ApiFunction", "SweeperFunction", "TaskFunction"]
    for name in functions:
        assert "Role" not in TEMPLATE["Resources"][name]["Properties"], name  # SAM makes the role
        assert fnmatchcase(f"arn:aws:iam::{ACCOUNT}:role/autoblock-{name}Role-1A2B3C4D5E6F", pattern)
    for other in (
        f"arn:aws:iam::{ACCOUNT}:role/autoblock-BlockStateMachineRole-1A2B3C4D5E6F",
        f"arn:aws:iam::{ACCOUNT}:role/other-ApiFunctionRole-1A2B3C4D5E6F",
        f"arn:aws:iam::{ACCOUNT}:role/Admin",
        f"arn:aws:iam::{MEMBER}:role/autoblock-ApiFunctionRole-1A2B3C4D5E6F",
    ):
        assert not fnmatchcase(other, pattern), other


def test_the_member_role_may_only_describe_nacls_and_write_entries_of_tagged_ones_in_its_account() -> None:
    (policy,) = MEMBER_ROLE["Resources"]["MemberRole"]["Properties"]["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Action": "ec2:DescribeNetworkAcls", "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": ["ec2:CreateNetworkAclEntry", "ec2:ReplaceNetworkAclEntry", "ec2:DeleteNetworkAclEntry"],
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ec2:*:${AWS::AccountId}:network-acl/*"},
            "Condition": {"StringEquals": {"aws:ResourceTag/autoblock:managed": "true"}},
        },
    ]
    assert set(MEMBER_ROLE["Resources"]["MemberRole"]["Properties"]) == {
        "RoleName",
        "Description",
        "AssumeRolePolicyDocument",
        "Policies",
    }
    assert MEMBER_ROLE["Outputs"]["MemberRoleArn"]["Value"] == {"Fn::GetAtt": ["MemberRole", "Arn"]}


def _session(credentials: Mapping[str, object], region: str = HOME) -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=str(credentials["AccessKeyId"]),
        aws_secret_access_key=str(credentials["SecretAccessKey"]),
        aws_session_token=str(credentials["SessionToken"]),
        region_name=region,
    )


@pytest.fixture
def member_account(aws: None) -> boto3.Session:
    """Credentials acting in a second account of the organization, as its stack set's would."""
    credentials = boto3.client("sts", region_name=HOME).assume_role(
        RoleArn=f"arn:aws:iam::{MEMBER}:role/OrganizationAccountAccessRole", RoleSessionName="stackset"
    )["Credentials"]
    session = _session(credentials)
    assert session.client("sts").get_caller_identity()["Account"] == MEMBER
    return session


def _parameters(values: dict[str, str]) -> list[ParameterTypeDef]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def _deploy_member_role(session: boto3.Session, parameters: dict[str, str]) -> Any:
    """member-role.yaml as a stack in the member account (as the stack set deploys it); its CloudFormation client."""
    cfn = session.client("cloudformation")
    cfn.create_stack(
        StackName="autoblock-member",
        TemplateBody=(ROOT / "member-role.yaml").read_text(),
        Parameters=_parameters(parameters),
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    return cfn


def test_member_role_yaml_deploys_the_role_into_the_member_account_whose_credentials_write_its_nacls(
    member_account: boto3.Session,
) -> None:
    # Given member-role.yaml deployed in the member account, as the stack set deploys it
    cfn = _deploy_member_role(member_account, {"AdministratorAccountId": ACCOUNT, "OrganizationId": ORGANIZATION})
    (stack,) = cfn.describe_stacks(StackName="autoblock-member")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    role_arn = f"arn:aws:iam::{MEMBER}:role/autoblock-member"
    assert stack["Outputs"][0]["OutputValue"] == role_arn

    # Then the role is in the member account, with the trust and policy of the template
    iam = member_account.client("iam")
    trust_policy: Any = iam.get_role(RoleName="autoblock-member")["Role"]["AssumeRolePolicyDocument"]
    (trust,) = trust_policy["Statement"]
    assert trust["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert trust["Condition"] == {
        "ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/autoblock-*FunctionRole-*"},
        "StringEquals": {"aws:PrincipalOrgID": ORGANIZATION},
    }
    assert iam.list_role_policies(RoleName="autoblock-member")["PolicyNames"] == ["autoblock-managed-nacls"]
    document: Any = iam.get_role_policy(RoleName="autoblock-member", PolicyName="autoblock-managed-nacls")[
        "PolicyDocument"
    ]
    if isinstance(document, str):  # moto's CloudFormation stores the document's Python repr
        document = ast.literal_eval(document)
    write = document["Statement"][1]
    assert write["Resource"] == f"arn:aws:ec2:*:{MEMBER}:network-acl/*"
    assert write["Condition"] == {"StringEquals": {"aws:ResourceTag/autoblock:managed": "true"}}
    # and not in the administrator's account
    assert "autoblock-member" not in [
        r["RoleName"] for r in boto3.client("iam", region_name=HOME).list_roles()["Roles"]
    ]

    # When the administrator's function assumes it
    ec2 = member_account.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    nacl = ec2.create_network_acl(
        VpcId=vpc,
        TagSpecifications=[{"ResourceType": "network-acl", "Tags": [{"Key": "autoblock:managed", "Value": "true"}]}],
    )["NetworkAcl"]["NetworkAclId"]
    assumed = boto3.client("sts", region_name=HOME).assume_role(RoleArn=role_arn, RoleSessionName="autoblock")
    as_member = _session(assumed["Credentials"]).client("ec2")
    as_member.create_network_acl_entry(
        NetworkAclId=nacl, RuleNumber=10, Protocol="-1", RuleAction="deny", Egress=False, CidrBlock="203.0.113.7/32"
    )

    # Then the entry is in the member account's NACL, which the administrator's own EC2 does not see
    (seen,) = ec2.describe_network_acls(NetworkAclIds=[nacl])["NetworkAcls"]
    assert {(e["RuleNumber"], e["CidrBlock"]) for e in seen["Entries"] if e["RuleAction"] == "deny"} >= {
        (10, "203.0.113.7/32")
    }
    home = boto3.client("ec2", region_name=HOME).describe_network_acls()["NetworkAcls"]
    assert nacl not in [a["NetworkAclId"] for a in home]


def test_without_an_organization_the_member_role_checks_the_administrator_s_roles_alone(
    member_account: boto3.Session,
) -> None:
    _deploy_member_role(
        member_account, {"AdministratorAccountId": ACCOUNT, "OrganizationId": "", "MemberRoleName": "blocker"}
    )
    trust_policy: Any = member_account.client("iam").get_role(RoleName="blocker")["Role"]["AssumeRolePolicyDocument"]
    (trust,) = trust_policy["Statement"]
    assert trust["Condition"] == {
        "ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/autoblock-*FunctionRole-*"}
    }


def test_the_forwarder_may_only_put_events_on_the_home_region_s_default_bus() -> None:
    resources = FORWARDER["Resources"]
    home_bus = {"Fn::Sub": "arn:${AWS::Partition}:events:${HomeRegion}:${AWS::AccountId}:event-bus/default"}
    rule = resources["FindingsRule"]["Properties"]
    assert rule["EventPattern"] == {"source": ["aws.guardduty"], "detail-type": ["GuardDuty Finding"]}
    (target,) = rule["Targets"]
    assert (target["Arn"], target["RoleArn"]) == (home_bus, {"Fn::GetAtt": ["ForwardRole", "Arn"]})
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ForwardDeadLetterQueue", "Arn"]}}
    (policy,) = resources["ForwardRole"]["Properties"]["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Action": "events:PutEvents", "Resource": home_bus}
    ]
    (send,) = resources["ForwardDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert send["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["FindingsRule", "Arn"]}}}
    assert resources["ForwardDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    (assertion,) = FORWARDER["Rules"]["NotTheHomeRegion"]["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "HomeRegion"}, {"Ref": "AWS::Region"}]}]}


def test_region_forwarder_yaml_sends_another_region_s_findings_to_the_home_region_s_bus(aws: None) -> None:
    # Given the forwarder deployed in another Region, and a queue on the home Region's default bus
    cfn = boto3.client("cloudformation", region_name=OTHER)
    cfn.create_stack(
        StackName="autoblock-forwarder",
        TemplateBody=(ROOT / "region-forwarder.yaml").read_text(),
        Parameters=_parameters({"HomeRegion": HOME}),
        Capabilities=["CAPABILITY_IAM"],
    )
    events = boto3.client("events", region_name=OTHER)
    (rule,) = events.list_rules()["Rules"]
    (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Arn"] == f"arn:aws:events:{HOME}:{ACCOUNT}:event-bus/default"
    sqs = boto3.client("sqs", region_name=HOME)
    queue = sqs.create_queue(QueueName="home-bus")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    home = boto3.client("events", region_name=HOME)
    home.put_rule(Name="findings", EventPattern=json.dumps({"source": ["aws.guardduty"]}))
    home.put_targets(Rule="findings", Targets=[{"Id": "queue", "Arn": queue_arn}])

    # When GuardDuty puts a finding on the other Region's bus
    finding = json.loads(Path(ROOT / "events" / "guardduty_ssh_bruteforce.json").read_text())
    put = events.put_events(
        Entries=[
            {"Source": "aws.guardduty", "DetailType": "GuardDuty Finding", "Detail": json.dumps(finding["detail"])}
        ]
    )
    assert put["FailedEntryCount"] == 0

    # Then it arrives on the home Region's bus, whole
    (message,) = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)["Messages"]
    arrived = json.loads(message["Body"])
    assert (arrived["source"], arrived["detail-type"], arrived["detail"]) == (
        "aws.guardduty",
        "GuardDuty Finding",
        finding["detail"],
    )


def test_nacl_from_finding_lets_the_functions_write_only_tagged_nacls_of_their_own_account() -> None:
    statements = TEMPLATE["Resources"]["NaclWritePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (tagged,) = [s["Fn::If"] for s in statements if s.get("Fn::If", [None])[0] == "NaclFromFindingOn"]
    assert tagged[1:] == [
        {
            "Effect": "Allow",
            "Action": ["ec2:CreateNetworkAclEntry", "ec2:DeleteNetworkAclEntry"],
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ec2:*:${AWS::AccountId}:network-acl/*"},
            "Condition": {"StringEquals": {"aws:ResourceTag/autoblock:managed": "true"}},
        },
        {"Ref": "AWS::NoValue"},
    ]
    assert TEMPLATE["Conditions"]["NaclFromFindingOn"] == {"Fn::Equals": [{"Ref": "NaclFromFinding"}, "true"]}
