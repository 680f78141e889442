"""The template, the ASL and the code agree: every substitution, handler, route and fixture."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autoblock.handlers import api
from tests.integration.conftest import ASL_PATH, ROOT, Stack, load_template, resolve, substitute_asl

TEMPLATE = load_template()
RESOURCES = TEMPLATE["Resources"]
FUNCTIONS = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}


def test_every_placeholder_in_the_asl_is_a_definition_substitution() -> None:
    placeholders = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", ASL_PATH.read_text()))
    substitutions = set(RESOURCES["BlockStateMachine"]["Properties"]["DefinitionSubstitutions"])
    assert placeholders == substitutions


def test_the_substituted_asl_is_accepted_by_step_functions(stack: Stack) -> None:
    # The deploy fixture substituted and created it; here: nothing unresolved, and every Lambda
    # task names a function of the template.
    definition = json.loads(stack.sfn.describe_state_machine(stateMachineArn=stack.state_machine_arn)["definition"])
    names = {
        s["Parameters"]["FunctionName"].rsplit(":", 1)[-1] for s in definition["States"].values() if s["Type"] == "Task"
    }
    assert names == set(FUNCTIONS) - {"ApiFunction", "SweeperFunction"}
    assert "${" not in json.dumps(definition)


def test_every_handler_in_the_template_resolves_to_a_function() -> None:
    code_uri = TEMPLATE["Globals"]["Function"]["CodeUri"]
    assert (ROOT / code_uri / "requirements.txt").is_file()
    for name, resource in FUNCTIONS.items():
        module_name, _, attr = resource["Properties"]["Handler"].rpartition(".")
        assert (ROOT / code_uri / Path(*module_name.split("."))).with_suffix(".py").is_file(), name
        assert callable(getattr(importlib.import_module(module_name), attr)), name


def test_every_api_event_in_the_template_is_a_route_of_the_api_and_back() -> None:
    events = {
        (e["Properties"]["Method"].upper(), e["Properties"]["Path"])
        for e in FUNCTIONS["ApiFunction"]["Properties"]["Events"].values()
        if e["Type"] == "Api"
    }
    schema = json.loads(api.openapi_document())
    routes = {(method.upper(), path) for path, item in schema["paths"].items() for method in item}
    assert events == routes


def test_the_committed_openapi_document_matches_the_code() -> None:
    committed = (ROOT / "docs" / "openapi.json").read_text()
    assert json.loads(committed) == json.loads(api.openapi_document()), "run: make openapi"


def test_every_function_gets_the_environment_its_settings_need() -> None:
    from autoblock.models import Settings

    required = {n.upper() for n, f in Settings.model_fields.items() if f.is_required()}
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert required <= set(env)


def test_every_event_fixture_is_used_by_a_test() -> None:
    tests = "".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    for fixture in (ROOT / "events").glob("*.json"):
        assert f'"{fixture.name}"' in tests, f"events/{fixture.name} is used by no test"


def test_the_ec2_write_policy_names_exactly_the_configured_nacls() -> None:
    condition, statement, otherwise = RESOURCES["NaclWritePolicy"]["Properties"]["PolicyDocument"]["Statement"][0][
        "Fn::If"
    ]
    # No NACL of its own (organization mode only): no write statement at all
    assert (condition, otherwise) == ("HasOwnNacls", {"Ref": "AWS::NoValue"})
    assert statement["Action"] == ["ec2:CreateNetworkAclEntry", "ec2:DeleteNetworkAclEntry"]
    split = statement["Resource"]["Fn::Split"]
    arns = resolve(split[1], {"NetworkAclIds": ["acl-0123456789abcdef0", "acl-0fedcba9876543210"]}).split(split[0])
    assert arns == [
        "arn:*:ec2:*:*:network-acl/acl-0123456789abcdef0",
        "arn:*:ec2:*:*:network-acl/acl-0fedcba9876543210",
    ]


def test_the_outputs_users_need_exist() -> None:
    assert {"ApiUrl", "StateMachineArn", "TableName", "TokenSecretArn"} <= set(TEMPLATE["Outputs"])


def test_substitution_refuses_an_unknown_placeholder() -> None:
    with pytest.raises(KeyError, match="Nope"):
        substitute_asl('{"a": "${Nope}"}', {})


def test_stage_throttling_is_on() -> None:
    settings = RESOURCES["BlocksApi"]["Properties"]["MethodSettings"][0]
    assert settings["ThrottlingRateLimit"] > 0 and settings["ThrottlingBurstLimit"] > 0


def _emitted_metric_names() -> set[str]:
    code = "".join(p.read_text() for p in (ROOT / "functions" / "autoblock").rglob("*.py"))
    return set(re.findall(r'(?:name="|count\(")([A-Z][A-Za-z]+)"', code))


def test_every_alarm_watches_a_metric_that_exists_and_notifies_the_topic() -> None:
    alarms = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) == {
        "FailedExecutionsAlarm",
        "SweeperRepairsAlarm",
        "SlotsHighAlarm",
        "LambdaErrorsAlarm",
        "LambdaThrottlesAlarm",
    }
    for alarm in alarms.values():
        assert alarm["Condition"] == "AlarmsOn"
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        # Missing data is no alarm: the sweeper publishes only when it has something to say
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"
    props = {name: a["Properties"] for name, a in alarms.items()}
    ours = {p["MetricName"] for p in props.values() if p.get("Namespace") == "autoblock"}
    assert ours == {"SweeperRepairsTotal", "SlotsInUsePercentMax"}
    assert ours <= _emitted_metric_names()
    assert props["SlotsHighAlarm"]["Threshold"] == 80
    for name in ("LambdaErrorsAlarm", "LambdaThrottlesAlarm"):
        watched = {
            m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"]
            for m in props[name]["Metrics"]
            if "MetricStat" in m
        }
        assert watched == set(FUNCTIONS)
    assert RESOURCES["AlarmTopic"]["Condition"] == "AlarmsOn"
    assert RESOURCES["AlarmEmailSubscription"]["Condition"] == "MailAlarms"
    assert TEMPLATE["Parameters"]["AlarmsEnabled"]["Default"] == "true"


def test_the_dashboard_is_a_choice_off_by_default() -> None:
    assert RESOURCES["Dashboard"]["Condition"] == "DashboardOn"
    assert TEMPLATE["Parameters"]["DashboardEnabled"]["Default"] == "false"
    assert TEMPLATE["Outputs"]["DashboardName"]["Condition"] == "DashboardOn"


def _log_group_of(name: str, function: dict) -> dict | None:
    """The stack's log group a function writes to: its LoggingConfig.LogGroup, or the group named
    /aws/lambda/<function> (where Lambda writes by default)."""
    configured = function["Properties"].get("LoggingConfig", {}).get("LogGroup")
    for group_name, group in RESOURCES.items():
        if group["Type"] != "AWS::Logs::LogGroup":
            continue
        if configured == {"Ref": group_name}:
            return group
        if group["Properties"].get("LogGroupName") == {"Fn::Sub": f"/aws/lambda/${{{name}}}"}:
            return group
    return None


def test_every_log_group_expires() -> None:
    groups = [r for r in RESOURCES.values() if r["Type"] == "AWS::Logs::LogGroup"]
    assert groups
    for group in groups:
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert {name for name, function in FUNCTIONS.items() if _log_group_of(name, function) is None} == set()
    assert set(FUNCTIONS) == {"ApiFunction", "TaskFunction", "SweeperFunction"}


def test_the_sweeper_is_not_traced_and_logs_no_line_per_run() -> None:
    (sweeper_function,) = [
        f for f in FUNCTIONS.values() if f["Properties"]["Handler"] == "autoblock.handlers.sweeper.lambda_handler"
    ]
    props = sweeper_function["Properties"]
    assert props["Tracing"] == "PassThrough"
    assert props["LoggingConfig"]["SystemLogLevel"] == "WARN"
    assert props["LoggingConfig"]["LogFormat"] == "JSON"


def test_the_table_is_encrypted_with_the_aws_owned_key() -> None:
    # DynamoDB encrypts every table; SSEEnabled: true would switch to the aws/dynamodb KMS key
    assert "SSESpecification" not in RESOURCES["BlocksTable"]["Properties"]


def test_the_dashboard_shows_metrics_the_code_emits() -> None:
    nacl, waf, end = RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Join"][1]
    names = r'"(Blocks[A-Za-z]+|Slots[A-Za-z]+|Sweeper[A-Za-z]+|LiveBlocks)"|MetricName=\\"([A-Za-z]+)\\"'
    shown = {a or b for a, b in re.findall(names, nacl["Fn::Sub"] + waf["Fn::If"][1]["Fn::Sub"])}
    assert "WafSetAddresses" in shown and "LiveBlocks" in shown
    assert shown <= _emitted_metric_names()
    # The WAF widget only with WafOn; either way the body is one JSON document
    assert waf["Fn::If"][0] == "WafOn" and waf["Fn::If"][2] == ""
    for widgets in (nacl["Fn::Sub"] + end, nacl["Fn::Sub"] + waf["Fn::If"][1]["Fn::Sub"] + end):
        assert json.loads(widgets.replace("${AWS::Region}", "us-east-1").replace("${BlockStateMachine}", "arn"))


def test_history_dry_run_and_escalation_parameters_reach_every_function() -> None:
    params = TEMPLATE["Parameters"]
    assert (params["HistoryRetentionDays"]["Default"], params["HistoryRetentionDays"]["MinValue"]) == (90, 1)
    assert (params["DryRun"]["Default"], params["DryRun"]["AllowedValues"]) == ("false", ["true", "false"])
    assert (params["EscalationWindowDays"]["Default"], params["EscalationWindowDays"]["MinValue"]) == (30, 0)
    assert (params["EscalationFactor"]["Default"], params["EscalationFactor"]["MinValue"]) == (2, 1)
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert {
        "HISTORY_RETENTION_DAYS": {"Ref": "HistoryRetentionDays"},
        "DRY_RUN": {"Ref": "DryRun"},
        "ESCALATION_WINDOW_DAYS": {"Ref": "EscalationWindowDays"},
        "ESCALATION_FACTOR": {"Ref": "EscalationFactor"},
    }.items() <= env.items()
    grouped = {
        p for g in TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"] for p in g["Parameters"]
    }
    assert grouped == set(params)
    # The table's TTL attribute is what history items and ended blocks carry
    assert RESOURCES["BlocksTable"]["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": "ttl",
        "Enabled": True,
    }


def test_the_functions_requirements_are_generated_from_the_lock() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/requirements.py", "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = {
        line.split("==")[0]
        for line in (ROOT / "functions" / "requirements.txt").read_text().splitlines()
        if "==" in line
    }
    # What the runtime has is not shipped, nor the X-Ray SDK (it would drag botocore along)
    assert shipped.isdisjoint({"boto3", "botocore", "s3transfer", "urllib3", "aws-xray-sdk"})
    assert {"aws-lambda-powertools", "pydantic"} <= shipped
