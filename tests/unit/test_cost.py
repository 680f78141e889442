"""The idle cost is computed from template.yaml, and what the README says is what it computes."""

from __future__ import annotations

from pathlib import Path

from bench import cost

TEMPLATE = cost.load_template()
FUNCTIONS = {n: r for n, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}


def test_the_readme_and_the_benchmarks_report_say_what_the_model_computes() -> None:
    assert cost.stale() == [], "run: make cost"


def test_idle_costs_at_most_60_cents_a_month_before_alarms_with_the_defaults() -> None:
    defaults = cost.estimate(template=TEMPLATE)
    assert defaults.before_alarms <= 0.60
    # The secret is the largest line before alarms; the sweeper publishes no custom metric and is not traced
    idle = [line for line in defaults.lines if not line.alarm]
    assert max(idle, key=lambda line: line.usd).price is cost.PRICES["secret"]
    assert not [
        line for line in defaults.lines if line.price in (cost.PRICES["custom_metric"], cost.PRICES["xray_trace"])
    ]


def test_alarms_count_every_metric_a_metric_math_alarm_reads_and_can_be_switched_off() -> None:
    on = cost.estimate(template=TEMPLATE)
    errors = next(line for line in on.lines if line.resource == "LambdaErrorsAlarm")
    assert errors.quantity == len(FUNCTIONS)
    off = cost.estimate({"AlarmsEnabled": "false"}, template=TEMPLATE)
    assert off.alarms == 0 and off.before_alarms == on.before_alarms


def test_the_dashboard_costs_3_dollars_when_switched_on() -> None:
    on = cost.estimate({"DashboardEnabled": "true"}, template=TEMPLATE)
    off = cost.estimate(template=TEMPLATE)
    assert round(on.before_alarms - off.before_alarms, 6) == 3.00


def test_an_existing_token_secret_is_not_billed_to_this_stack() -> None:
    existing = cost.estimate(
        {"ExistingTokenSecretArn": "arn:aws:secretsmanager:us-east-1:1:secret:x"}, template=TEMPLATE
    )
    assert not [line for line in existing.lines if line.price is cost.PRICES["secret"]]


def test_each_nacl_adds_the_sweeper_s_reads_of_its_rule_numbers() -> None:
    one = cost.estimate(template=TEMPLATE)
    two = cost.estimate({"NetworkAclIds": "acl-0123456789abcdef0,acl-0fedcba9876543210"}, template=TEMPLATE)
    extra = two.before_alarms - one.before_alarms
    assert round(extra, 6) == round(2 * 1.0 * 43_800 * 0.125 / 1e6, 6)


def test_a_traced_chatty_sweeper_with_a_kms_key_would_be_billed_for_all_of_it() -> None:
    # Given: the template as it was (Tracing: Active, platform log lines, the aws/dynamodb key)
    template = cost.load_template()
    (sweeper,) = [
        f
        for f in template["Resources"].values()
        if f["Properties"].get("Handler", "").endswith("sweeper.lambda_handler")
    ]
    sweeper["Properties"]["Tracing"] = "Active"
    del sweeper["Properties"]["LoggingConfig"]
    template["Resources"]["BlocksTable"]["Properties"]["SSESpecification"] = {"SSEEnabled": True}

    lines = {line.price.per: line for line in cost.estimate(template=template).lines}

    assert lines["trace recorded"].quantity == 43_800
    assert round(lines["GB ingested"].quantity, 4) == round(43_800 * cost.PLATFORM_LOG_BYTES / 1e9, 4)
    assert lines["request"].resource == "BlocksTable"  # KMS requests (Lambda's are "request" too: the last wins)


def test_only_rate_schedules_are_modelled() -> None:
    assert cost.schedule_invocations("rate(1 minute)") == 43_800
    assert cost.schedule_invocations("rate(5 minutes)") == 43_800 / 5


def test_package_sizes_flag_a_function_that_ships_botocore(tmp_path: Path) -> None:
    (tmp_path / "ApiFunction" / "autoblock").mkdir(parents=True)
    (tmp_path / "ApiFunction" / "autoblock" / "x.py").write_bytes(b"x" * 1_500_000)
    (tmp_path / "SweeperFunction" / "botocore").mkdir(parents=True)

    sizes = cost.package_sizes(tmp_path)

    assert [(s.function, s.megabytes, s.ships_boto) for s in sizes] == [
        ("ApiFunction", 1.5, []),
        ("SweeperFunction", 0.0, ["botocore"]),
    ]
    assert cost.package_sizes(tmp_path / "missing") == []


def test_waf_bills_nothing_while_off_and_one_rule_for_the_rule_group_in_your_web_acl() -> None:
    off = cost.estimate(template=TEMPLATE)
    assert not [line for line in off.lines if line.price.page == "AWS WAF Pricing"]

    on = cost.estimate({"WafScope": "REGIONAL", "WafIpSetsPerFamily": "5"}, template=TEMPLATE)

    (rule,) = [line for line in on.lines if line.price.page == "AWS WAF Pricing"]
    # Ten IP sets and a rule group of ten rules: one rule of the web ACL that references the group
    assert (rule.resource, rule.quantity, rule.usd) == ("WafRuleGroup", 1, 1.00)
    # And the sweeper reads each set's summary and the overdue WAF blocks every minute
    sweeping = [line for line in on.lines if "WAF" in line.item and line.resource == "BlocksTable"]
    assert [(line.item.split(" (")[0], line.quantity) for line in sweeping] == [
        ("1 x Query of the overdue WAF-only blocks", 1 * 0.5 * 43800),
        ("10 x summary item of a WAF IP set", 10 * 1.0 * 43800),
    ]
    assert abs(on.before_alarms - off.before_alarms - (1.00 + sum(line.usd for line in sweeping))) < 1e-9


def test_waf_with_a_web_acl_of_its_own_bills_the_acl_its_rule_and_the_requests_it_inspects() -> None:
    given = {"WafScope": "REGIONAL", "ProtectedResourceArns": "arn:aws:elasticloadbalancing:x,arn:aws:apigateway:y"}

    lines = {line.price.per: line for line in cost.estimate(given, template=TEMPLATE).lines}

    assert (lines["web ACL-month"].resource, lines["web ACL-month"].usd) == ("WebAcl", 5.00)
    assert (
        lines["rule-month (a rule group is one rule)"].resource,
        lines["rule-month (a rule group is one rule)"].usd,
    ) == (
        "WebAcl",
        1.00,
    )
    # Requests are the protected resources' traffic, none at idle, at $0.60 a million
    assert lines["request inspected"].quantity == 0
    assert round(lines["request inspected"].price.usd * 1e6, 6) == 0.60
    # The web ACL is the stack's only when WAF is on
    assert not [
        line
        for line in cost.estimate({"ProtectedResourceArns": "arn:aws:x"}, template=TEMPLATE).lines
        if line.resource == "WebAcl"
    ]
