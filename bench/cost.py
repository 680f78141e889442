"""make cost: what the stack bills a month while idle, computed from template.yaml.

Idle means nothing is blocked and nothing is requested: only the schedule runs (the sweeper, every
minute), and whatever bills by the month whether it is used or not (secrets, alarms, dashboards,
keys). Every quantity comes from the template under the parameter values given (its defaults, or
e.g. ``{"AlarmsEnabled": "false"}``): the schedule's rate gives the invocations, the function's
MemorySize and architecture the GB-seconds, each alarm's metrics (a metric-math alarm: every metric
its expressions read) the alarm metrics, a resource's Condition whether it exists at all. What the
template cannot say is stated once below, with where it comes from: how long an idle sweep runs and
what it reads (the reads are checked against an idle sweep on emulated AWS by
tests/integration/test_cost.py). The custom metrics an idle sweep publishes are counted by running
the sweeper's own ``record`` on an empty sweep report.

Free tiers are shown, never subtracted: an account's other workloads may already use them.

No AWS call is made. ``python -m bench.cost`` prints the table; ``--write`` rewrites the cost
section of README.md and docs/benchmarks.md (``make cost``); ``--check`` fails when they are stale;
``--sizes`` prints each function's package size after ``sam build``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
README = ROOT / "README.md"
BENCHMARKS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- cost:begin (make cost writes this section) -->", "<!-- cost:end -->"

HOURS_PER_MONTH = 730  # AWS's pricing examples' month
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600


@dataclass(frozen=True)
class Price:
    usd: float
    per: str
    page: str
    free_tier: str | None = None  # the always-free tier that would cover it, if any


# Public us-east-1 prices, from the AWS pricing pages named, as of PRICES_AS_OF.
PRICES_AS_OF = "2025-06 (DynamoDB on-demand after its November 2024 price cut)"
PRICES: dict[str, Price] = {
    "lambda_request": Price(0.20 / 1e6, "request", "AWS Lambda Pricing", "1 million requests a month"),
    "lambda_gb_s_arm64": Price(0.0000133334, "GB-second (arm64)", "AWS Lambda Pricing", "400,000 GB-s a month"),
    "lambda_gb_s_x86_64": Price(0.0000166667, "GB-second (x86_64)", "AWS Lambda Pricing", "400,000 GB-s a month"),
    "dynamodb_read": Price(0.125 / 1e6, "read request unit (on-demand)", "Amazon DynamoDB Pricing"),
    "dynamodb_write": Price(0.625 / 1e6, "write request unit (on-demand)", "Amazon DynamoDB Pricing"),
    "dynamodb_storage": Price(0.25, "GB-month", "Amazon DynamoDB Pricing", "25 GB"),
    "dynamodb_pitr": Price(0.20, "GB-month of table (continuous backup)", "Amazon DynamoDB Pricing"),
    "secret": Price(0.40, "secret-month", "AWS Secrets Manager Pricing", None),
    "custom_metric": Price(0.30, "metric-month", "Amazon CloudWatch Pricing", "10 metrics"),
    "alarm_metric": Price(
        0.10, "alarm metric-month (standard resolution)", "Amazon CloudWatch Pricing", "10 alarm metrics"
    ),
    "dashboard": Price(3.00, "dashboard-month", "Amazon CloudWatch Pricing", "3 dashboards"),
    "log_ingestion": Price(0.50, "GB ingested", "Amazon CloudWatch Pricing", "5 GB of logs"),
    "log_storage": Price(0.03, "GB-month stored", "Amazon CloudWatch Pricing", "5 GB of logs"),
    "xray_trace": Price(5.00 / 1e6, "trace recorded", "AWS X-Ray Pricing", "100,000 traces a month"),
    "kms_key": Price(1.00, "customer managed key-month", "AWS Key Management Service Pricing"),
    "kms_request": Price(0.03 / 1e4, "request", "AWS Key Management Service Pricing", "20,000 requests a month"),
    # AWS WAF bills web ACLs, the rules in them and the requests they inspect; an IP set or a rule
    # group bills nothing by itself. A rule group in a web ACL is one rule however many rules it
    # holds (AWS Security Services Best Practices, "WAF Cost": "Each rule group (whether custom or
    # managed) counts as a single rule for billing purposes").
    "waf_web_acl": Price(5.00, "web ACL-month", "AWS WAF Pricing"),
    "waf_rule": Price(1.00, "rule-month (a rule group is one rule)", "AWS WAF Pricing"),
    "waf_request": Price(0.60 / 1e6, "request inspected", "AWS WAF Pricing"),
}

# What the template cannot say, stated once.
# An idle sweep on a warm container: 2 DescribeNetworkAcls-and-Query rounds, a few tens of ms each
# (a cold start, a few a day, adds about 1 s). Lambda's Duration metric of the deployed sweeper is
# the figure to check this against.
IDLE_DURATION_SECONDS = {"autoblock.handlers.sweeper.lambda_handler": 0.3}
# What an idle sweep reads (logic/sweeper.py, dal/table.py): the live index twice (a GSI Query is
# eventually consistent: half a read unit for up to 4 KB) and the slots of each NACL and direction
# (consistent: one read unit). Checked against an idle sweep by tests/integration/test_cost.py.
IDLE_SWEEP_READS: dict[str, tuple[str, float]] = {
    # name: (how many: "2" or "2 per NACL", read units each)
    "Query of the live index": ("2", 0.5),
    "Query of the rule numbers of a NACL and direction": ("2 per NACL", 1.0),
    # With WAF (WafScope): the overdue WAF-only blocks (none while idle), and each set's summary in
    # one BatchGetItem (consistent, an item of under 1 KB each). GetIPSet calls bill nothing.
    "Query of the overdue WAF-only blocks": ("1 with WAF", 0.5),
    "summary item of a WAF IP set (BatchGetItem)": ("1 per WAF set", 1.0),
}
# JSON START and REPORT records Lambda writes per invocation unless SystemLogLevel is WARN or above.
PLATFORM_LOG_BYTES = 650
# With the aws/dynamodb key, DynamoDB asks KMS for the table key again after 5 minutes without a
# request from a caller: at most one request per 5 minutes per role that reads the table.
KMS_REQUESTS_PER_ROLE = HOURS_PER_MONTH * 12

FREE_AT_IDLE = (
    "API Gateway (per request), Step Functions (per state transition), SQS, SNS, EventBridge rules "
    "(schedules and AWS service events are free), and DynamoDB storage and backups of an empty table "
    "($0.25 and $0.20 a GB-month once history accumulates)"
)


@dataclass(frozen=True)
class Line:
    resource: str
    item: str
    quantity: float
    price: Price
    alarm: bool = False

    @property
    def usd(self) -> float:
        return self.quantity * self.price.usd


@dataclass
class Estimate:
    parameters: dict[str, str]
    lines: list[Line] = field(default_factory=list)

    @property
    def before_alarms(self) -> float:
        return sum(line.usd for line in self.lines if not line.alarm)

    @property
    def alarms(self) -> float:
        return sum(line.usd for line in self.lines if line.alarm)

    @property
    def total(self) -> float:
        return self.before_alarms + self.alarms


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    template, matches = decode(str(path))
    if matches:
        raise ValueError(f"{path}: {matches}")
    return dict(template)


def parameter_values(template: Mapping[str, Any], given: Mapping[str, str] | None = None) -> dict[str, str]:
    """Defaults, overridden by ``given``; NetworkAclIds (empty by default) is one NACL unless given."""
    values = {name: str(p["Default"]) for name, p in template.get("Parameters", {}).items() if "Default" in p}
    if not values.get("NetworkAclIds"):
        values["NetworkAclIds"] = "acl-0123456789abcdef0"
    values.update(given or {})
    return values


def _condition(node: Any, template: Mapping[str, Any], params: Mapping[str, str]) -> Any:
    if isinstance(node, list):
        return [_condition(n, template, params) for n in node]
    if isinstance(node, dict) and len(node) == 1:
        ((fn, arg),) = node.items()
        if fn == "Ref":
            listed = template.get("Parameters", {}).get(arg, {}).get("Type") == "CommaDelimitedList"
            return params[arg].split(",") if listed else params[arg]
        if fn == "Fn::Join":
            return str(arg[0]).join(str(p) for p in _condition(arg[1], template, params))
        if fn == "Fn::Split":
            return str(_condition(arg[1], template, params)).split(arg[0])
        if fn == "Fn::Select":
            return _condition(arg[1], template, params)[int(arg[0])]
        if fn == "Condition":
            return _condition(template["Conditions"][arg], template, params)
        if fn == "Fn::Equals":
            return str(_condition(arg[0], template, params)) == str(_condition(arg[1], template, params))
        if fn == "Fn::Not":
            return not _condition(arg[0], template, params)
        if fn == "Fn::And":
            return all(_condition(a, template, params) for a in arg)
        if fn == "Fn::Or":
            return any(_condition(a, template, params) for a in arg)
        raise ValueError(f"unsupported in a condition: {fn}")
    return node


def resources(template: Mapping[str, Any], params: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The resources that exist under these parameter values."""
    return {
        name: r
        for name, r in template["Resources"].items()
        if "Condition" not in r or _condition({"Condition": r["Condition"]}, template, params)
    }


def function_property(template: Mapping[str, Any], function: Mapping[str, Any], name: str) -> Any:
    """A function's property, or the Globals' (SAM merges maps, so LoggingConfig is merged)."""
    own = function.get("Properties", {}).get(name)
    inherited = template.get("Globals", {}).get("Function", {}).get(name)
    if isinstance(own, dict) and isinstance(inherited, dict):
        return {**inherited, **own}
    return own if own is not None else inherited


def schedule_invocations(expression: str) -> float:
    """Invocations a month of ``rate(N unit)``."""
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    if not match:
        raise ValueError(f"only rate() schedules are modelled: {expression}")
    seconds = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")] * int(match.group(1))
    return SECONDS_PER_MONTH / seconds


def alarm_metrics(alarm: Mapping[str, Any]) -> int:
    """Metrics an alarm is billed for: 1, or every metric a metric-math alarm's expressions read."""
    props = alarm["Properties"]
    if "MetricName" in props:
        return 1
    return sum(1 for m in props.get("Metrics", []) if "MetricStat" in m)


@contextlib.contextmanager
def _captured(env: Mapping[str, str]) -> Iterator[io.StringIO]:
    out = io.StringIO()
    with mock.patch.dict(os.environ, env), contextlib.redirect_stdout(out):
        yield out


def idle_sweep_output(template: Mapping[str, Any], rule_limit: int) -> tuple[list[str], int]:
    """The custom metrics (namespace/name/dimensions) and the bytes of log the sweeper's ``record``
    writes for a sweep that found nothing: its own code, run on an empty report."""
    from autoblock.handlers import sweeper
    from autoblock.logic.sweeper import SweepReport

    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    env = {k: str(v) for k, v in variables.items() if k.startswith("POWERTOOLS_") and isinstance(v, str | int)}
    with _captured(env) as out:
        sweeper.record(SweepReport(), rule_limit)
    metrics = []
    for line in out.getvalue().splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        for directive in record.get("_aws", {}).get("CloudWatchMetrics", []):
            dimensions = ",".join(f"{d}={record[d]}" for ds in directive["Dimensions"] for d in ds)
            metrics += [f"{directive['Namespace']}/{m['Name']}[{dimensions}]" for m in directive["Metrics"]]
    logged = sum(len(line) + 1 for line in out.getvalue().splitlines() if "_aws" not in line)
    return metrics, logged


def idle_sweep_reads(nacls: int, waf_sets: int) -> dict[str, tuple[int, float]]:
    """IDLE_SWEEP_READS for a stack: what an idle sweep reads, how many of each, and read units each."""
    per = {"2 per NACL": 2 * nacls, "1 with WAF": 1 if waf_sets else 0, "1 per WAF set": waf_sets}
    counted = {
        what: (per[count] if count in per else int(count), units) for what, (count, units) in IDLE_SWEEP_READS.items()
    }
    return {what: (n, units) for what, (n, units) in counted.items() if n}


def estimate(given: Mapping[str, str] | None = None, template: Mapping[str, Any] | None = None) -> Estimate:
    template = template if template is not None else load_template()
    params = parameter_values(template, given)
    present = resources(template, params)
    nacls = len(params["NetworkAclIds"].split(","))
    result = Estimate(dict(given or {}))
    add = result.lines.append
    log_groups = {n: r for n, r in present.items() if r["Type"] == "AWS::Logs::LogGroup"}

    for name, function in present.items():
        if function["Type"] != "AWS::Serverless::Function":
            continue
        schedules = [
            e["Properties"]["Schedule"]
            for e in function["Properties"].get("Events", {}).values()
            if e["Type"] == "Schedule"
        ]
        if not schedules:
            continue  # invoked only by requests and blocks: nothing while idle
        runs = sum(schedule_invocations(s) for s in schedules)
        handler = function["Properties"]["Handler"]
        memory_gb = int(function_property(template, function, "MemorySize")) / 1024
        arch = function_property(template, function, "Architectures")[0]
        seconds = IDLE_DURATION_SECONDS[handler]
        add(Line(name, f"{runs:,.0f} scheduled invocations", runs, PRICES["lambda_request"]))
        add(
            Line(
                name,
                f"{runs:,.0f} x {seconds} s x {memory_gb * 1024:.0f} MB ({arch})",
                runs * seconds * memory_gb,
                PRICES[f"lambda_gb_s_{arch}"],
            )
        )
        if function_property(template, function, "Tracing") == "Active":
            add(Line(name, f"{runs:,.0f} X-Ray traces (Tracing: Active)", runs, PRICES["xray_trace"]))
        if handler == "autoblock.handlers.sweeper.lambda_handler":
            waf_sets = 0 if params.get("WafScope", "NONE") == "NONE" else 2 * int(params["WafIpSetsPerFamily"])
            for what, (per_sweep, units) in idle_sweep_reads(nacls, waf_sets).items():
                add(
                    Line(
                        "BlocksTable",
                        f"{per_sweep} x {what} ({units} RRU) x {runs:,.0f} sweeps ({nacls} NACL)",
                        per_sweep * units * runs,
                        PRICES["dynamodb_read"],
                    )
                )
            metrics, app_bytes = idle_sweep_output(template, int(params["RuleLimit"]))
            for metric in metrics:
                add(Line(name, f"custom metric {metric}, published every sweep", 1, PRICES["custom_metric"]))
            logging = function_property(template, function, "LoggingConfig") or {}
            platform = 0 if logging.get("SystemLogLevel") in ("WARN", "ERROR", "FATAL") else PLATFORM_LOG_BYTES
            gb = (app_bytes + platform) * runs / 1e9
            if gb:
                add(Line(name, f"{runs:,.0f} x {app_bytes + platform} B of log a sweep", gb, PRICES["log_ingestion"]))
                group = log_groups.get(str((logging.get("LogGroup") or {}).get("Ref")))
                retention = _condition((group or {}).get("Properties", {}).get("RetentionInDays"), template, params)
                months = int(retention) / (HOURS_PER_MONTH / 24) if retention else 12  # no retention: a year on
                add(
                    Line(
                        name,
                        f"that log kept {retention or 'forever (after a year)'} days",
                        gb * months,
                        PRICES["log_storage"],
                    )
                )

    for name, r in present.items():
        kind, props = r["Type"], r.get("Properties", {})
        if kind == "AWS::SecretsManager::Secret":
            add(Line(name, "1 secret", 1, PRICES["secret"]))
        elif kind == "AWS::KMS::Key":
            add(Line(name, "1 customer managed key", 1, PRICES["kms_key"]))
        elif kind == "AWS::DynamoDB::Table" and props.get("SSESpecification", {}).get("SSEEnabled"):
            key = props["SSESpecification"].get("KMSMasterKeyId", "alias/aws/dynamodb")
            if key != "alias/aws/dynamodb":
                add(Line(name, "its customer managed KMS key", 1, PRICES["kms_key"]))
            add(
                Line(
                    name,
                    "KMS requests for the table key (1 role, every 5 min)",
                    KMS_REQUESTS_PER_ROLE,
                    PRICES["kms_request"],
                )
            )
        elif kind == "AWS::CloudWatch::Dashboard":
            add(Line(name, "1 dashboard", 1, PRICES["dashboard"]))
        elif kind == "AWS::WAFv2::WebACL":
            rules = len(props.get("Rules", []))
            add(Line(name, "1 web ACL (ProtectedResourceArns)", 1, PRICES["waf_web_acl"]))
            add(Line(name, f"{rules} rule: the autoblock rule group", rules, PRICES["waf_rule"]))
            add(
                Line(name, "requests to the protected resources (your traffic: none at idle)", 0, PRICES["waf_request"])
            )
        elif kind == "AWS::WAFv2::RuleGroup" and not any(r["Type"] == "AWS::WAFv2::WebACL" for r in present.values()):
            add(Line(name, "1 rule in the web ACL you add it to", 1, PRICES["waf_rule"]))
        elif kind == "AWS::CloudWatch::Alarm":
            read = alarm_metrics(r)
            what = "1 metric" if "MetricName" in props else f"metric math over {read} metrics"
            add(Line(name, what, read, PRICES["alarm_metric"], alarm=True))
    return result


def _usd(value: float) -> str:
    return f"${value:.2f}" if round(value, 2) == round(value, 6) else f"${value:.4f}"


def _unit_price(usd: float) -> str:
    return f"${usd:.2f}" if usd >= 0.01 else "$" + f"{usd:.10f}".rstrip("0")


def table(result: Estimate) -> str:
    rows = [
        "| resource | what bills | quantity a month | unit price | $ a month (no free tier) | free tier that would cover it |",
        "|---|---|---|---|---|---|",
    ]
    for line in sorted(result.lines, key=lambda line: (line.alarm, -line.usd)):
        quantity = f"{line.quantity:,.0f}" if line.quantity >= 100 else f"{line.quantity:,.4g}"
        rows.append(
            f"| {line.resource} | {line.item} | {quantity} | {_unit_price(line.price.usd)} per {line.price.per} "
            f"| {_usd(line.usd)} | {line.price.free_tier or 'none'} |"
        )
    return "\n".join(rows)


SCENARIOS: dict[str, dict[str, str]] = {
    "defaults": {},
    "alarms off": {"AlarmsEnabled": "false"},
    "alarms and dashboard on": {"DashboardEnabled": "true"},
    "WAF, the rule group in your web ACL": {"WafScope": "REGIONAL"},
    "WAF with a web ACL of its own": {
        "WafScope": "REGIONAL",
        "ProtectedResourceArns": "arn:aws:elasticloadbalancing:...",
    },
}


def section(template: Mapping[str, Any] | None = None) -> str:
    """The cost section of README.md and docs/benchmarks.md: generated, never typed."""
    template = template if template is not None else load_template()
    results = {name: estimate(given, template) for name, given in SCENARIOS.items()}
    defaults, on = results["defaults"], results["alarms and dashboard on"]
    alarm_lines = [line for line in defaults.lines if line.alarm]
    dashboard = sum(line.usd for line in on.lines if line.price is PRICES["dashboard"])
    waf = {
        name: sum(line.usd for line in results[name].lines if line.price.page == "AWS WAF Pricing")
        for name in ("WAF, the rule group in your web ACL", "WAF with a web ACL of its own")
    }
    summary = "\n".join(
        f"| {name} ({', '.join(f'{k}={v}' for k, v in SCENARIOS[name].items()) or 'no parameter changed'}) "
        f"| {_usd(r.before_alarms)} | {_usd(r.alarms)} | {_usd(r.total)} |"
        for name, r in results.items()
    )
    return f"""{BEGIN}
Idle, per month (nothing blocked, the sweeper running every minute), computed by `bench/cost.py` from
`template.yaml` under its defaults (one NACL); `make cost` rewrites this section. Prices: public
us-east-1 prices as of {PRICES_AS_OF}, from the pricing pages of {", ".join(sorted({p.page.removesuffix(" Pricing") for p in PRICES.values()}))}.
Free tiers are not subtracted (another workload may use them); the last column says which one would
cover a line.

{table(defaults)}

| parameters | before alarms | alarms | total |
|---|---|---|---|
{summary}

The alarms (`AlarmsEnabled`, default `true`) cost {_usd(defaults.alarms)} a month: {sum(line.quantity for line in alarm_lines):.0f}
alarm metrics at $0.10, a metric-math alarm counting every metric it reads (one per function);
the first 10 alarm metrics of an account are free. The dashboard (`DashboardEnabled`, default
`false`) costs {_usd(dashboard)} a month, free while the account has fewer than 3 dashboards.
AWS WAF (`WafScope`, default `NONE`): IP sets and a rule group bill nothing by themselves; the rule
group in your web ACL is one rule, {_usd(waf["WAF, the rule group in your web ACL"])} a month; with `ProtectedResourceArns` the stack's
own web ACL and that rule cost {_usd(waf["WAF with a web ACL of its own"])} a month, plus {_unit_price(PRICES["waf_request"].usd * 1e6)} per million requests it
inspects (your traffic, not autoblock's). A rule group counts as one rule however many it holds (AWS
Security Services Best Practices, WAF Cost).
Free at idle: {FREE_AT_IDLE}. An idle sweep publishes no custom metric, writes no log line and is not
traced; the stated figures (an idle sweep's duration and reads) are in `bench/cost.py`.
{END}"""


def replace_section(text: str, new: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + new + text[end:]


def stale(paths: tuple[Path, ...] = (README, BENCHMARKS)) -> list[Path]:
    new = section()
    return [p for p in paths if replace_section(p.read_text(), new) != p.read_text()]


@dataclass(frozen=True)
class PackageSize:
    function: str
    megabytes: float
    ships_boto: list[str]  # boto3/botocore/s3transfer found in the package (the runtime has them)


def package_sizes(build: Path = ROOT / ".aws-sam" / "build") -> list[PackageSize]:
    """Each function's package after ``sam build`` (empty if there is no build)."""
    if not build.is_dir():
        return []
    sizes = []
    for folder in sorted(p for p in build.iterdir() if p.is_dir()):
        total = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        boto = [name for name in ("boto3", "botocore", "s3transfer") if (folder / name).is_dir()]
        sizes.append(PackageSize(folder.name, round(total / 1e6, 2), boto))
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--write", action="store_true", help="rewrite the cost section of README.md and docs/benchmarks.md"
    )
    parser.add_argument("--check", action="store_true", help="fail when those sections are stale")
    parser.add_argument("--sizes", action="store_true", help="each function's package size after sam build")
    parser.add_argument("--set", action="append", default=[], metavar="PARAMETER=VALUE", help="a parameter value")
    args = parser.parse_args(argv)
    if args.sizes:
        sizes = package_sizes()
        for size in sizes:
            print(
                f"{size.function}: {size.megabytes} MB{'; ships ' + ', '.join(size.ships_boto) if size.ships_boto else ''}"
            )
        if not sizes:
            print("no .aws-sam/build: run sam build first")
        return 1 if any(s.ships_boto for s in sizes) else 0
    if args.check:
        paths = stale()
        for path in paths:
            print(f"{path.relative_to(ROOT)}: the cost section is stale (run: make cost)")
        return 1 if paths else 0
    if args.write:
        new = section()
        for path in (README, BENCHMARKS):
            path.write_text(replace_section(path.read_text(), new))
            print(f"wrote the cost section of {path.relative_to(ROOT)}")
        return 0
    result = estimate(dict(item.split("=", 1) for item in args.set))
    print(table(result))
    print(f"\nbefore alarms {_usd(result.before_alarms)}, alarms {_usd(result.alarms)}, total {_usd(result.total)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
