"""An emulated autoblock stack on moto, built from template.yaml and the real ASL file: the local
stack (autoblock_local.stack), the integration tests (tests/integration/conftest.py) and the
benchmark all run on it.

moto internals are touched here and nowhere else:
* moto's Lambda without Docker only echoes, so ``LambdaSimpleBackend.invoke`` is patched to run the
  real handler in-process; an exception becomes ``FunctionError`` with ``errorType`` = class name,
  as Lambda reports it, so the ASL's Retry and Catch see our error names.
* moto's DynamoDB and EC2 do not apply a conditional write atomically against other threads;
  DynamoDB and EC2 do. Their request handling is serialized so concurrency tests show our races,
  not moto's.
* moto's TransactWriteItems backs up the whole table once per item of the transaction (a deep copy
  each); it backs it up once per transaction here, which is all its rollback needs. Otherwise a
  transaction's cost grows with the table times its items, which no DynamoDB does.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import logging
import re
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import boto3
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from cfnlint.decode import decode
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models.network_acls import NetworkAclBackend
from moto.ec2.responses import EC2Response

from autoblock.handlers import wiring

ROOT = Path(__file__).resolve().parents[1]
ASL_PATH = ROOT / "statemachines" / "block.asl.json"
EVENTS = ROOT / "events"
TOKEN = "test-token-0123456789abcdefghijklmnopqrstuvwxyzABCD"  # noqa: S105 - the tests' token on emulated AWS
REGION = "us-east-1"
ACCOUNT = "123456789012"
FOREIGN_RULES: list[dict[str, Any]] = [  # what a customer's NACL already holds: never created, changed or deleted by us
    {"RuleNumber": 100, "Protocol": "-1", "RuleAction": "allow", "Egress": False, "CidrBlock": "0.0.0.0/0"},
    {"RuleNumber": 100, "Protocol": "-1", "RuleAction": "allow", "Egress": True, "CidrBlock": "0.0.0.0/0"},
    {
        "RuleNumber": 5,
        "Protocol": "6",
        "RuleAction": "deny",
        "Egress": False,
        "CidrBlock": "198.51.100.99/32",
        "PortRange": {"From": 22, "To": 22},
    },
    {"RuleNumber": 200, "Protocol": "-1", "RuleAction": "deny", "Egress": False, "CidrBlock": "192.0.2.200/32"},
]


@dataclass
class FakeLambdaContext(LambdaContext):
    """The LambdaContext a handler gets when it runs in-process (a LambdaContext to the type checker:
    a handler's own signature, not a decorator, says what it takes)."""

    function_name: str = "autoblock-test"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:autoblock-test"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/autoblock-test"
    log_stream_name: str = "test"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


# moto logs every Fail state at ERROR; the tests assert on execution paths instead.
logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)


def load_template() -> dict[str, Any]:
    template, matches = decode(str(ROOT / "template.yaml"))
    assert not matches, matches
    return dict(template)


def resolve(node: Any, refs: dict[str, Any]) -> Any:
    """Resolve the few intrinsic functions the template's environment and substitutions use."""
    if isinstance(node, dict) and len(node) == 1:
        ((fn, arg),) = node.items()
        if fn == "Ref":
            return refs[arg]
        if fn == "Fn::GetAtt":
            name = ".".join(arg) if isinstance(arg, list) else arg
            return refs[name]
        if fn == "Fn::Join":
            delimiter, parts = arg
            parts = resolve(parts, refs)
            return delimiter.join(str(p) for p in parts)
        if fn == "Fn::Sub" and isinstance(arg, str):
            return re.sub(r"\$\{([A-Za-z0-9_:.]+)\}", lambda m: str(refs[m.group(1)]), arg)
        if fn == "Fn::If":
            condition, yes, no = arg
            return resolve(yes if refs[f"Condition:{condition}"] else no, refs)
    if isinstance(node, dict):
        return {k: resolve(v, refs) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, refs) for v in node]
    return node


LAMBDA_FAULTS: dict[str, list[str]] = {}  # function name → errorTypes its next invocations report
INVOCATIONS: Counter[str] = Counter()  # function name → invocations (the benchmark reads it)


def _run_handler(
    self: LambdaSimpleBackend,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: dict[str, str],
) -> bytes:
    fn = self.get_function(function_name, qualifier)
    INVOCATIONS[fn.function_name] += 1
    if LAMBDA_FAULTS.get(fn.function_name):
        response_headers["x-amz-function-error"] = "Unhandled"
        error_type = LAMBDA_FAULTS[fn.function_name].pop(0)
        return json.dumps({"errorType": error_type, "errorMessage": "injected by the test"}).encode()
    module_name, _, attr = str(fn.handler).rpartition(".")
    handler = getattr(importlib.import_module(module_name), attr)
    event = json.loads(body) if body else {}
    try:
        result = handler(event, FakeLambdaContext(function_name=fn.function_name))
    except Exception as exc:  # noqa: BLE001 - reported to the state machine as Lambda does
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
    return json.dumps(result).encode()


NACL_RULES_QUOTA = 20  # AWS's default rules per NACL, direction and address family; moto enforces none


def _create_entry_with_quota(
    self: NetworkAclBackend, network_acl_id: str, rule_number: int, *args: Any, **kwargs: Any
) -> Any:
    """moto's CreateNetworkAclEntry, refusing what AWS refuses past the rules quota."""
    names = [
        "protocol",
        "rule_action",
        "egress",
        "cidr_block",
        "icmp_code",
        "icmp_type",
        "port_range_from",
        "port_range_to",
        "ipv6_cidr_block",
    ]
    given = {**dict(zip(names, args, strict=False)), **kwargs}
    ipv6 = bool(given.get("ipv6_cidr_block"))
    same = [
        e
        for e in self.get_network_acl(network_acl_id).network_acl_entries
        if e.egress == given["egress"] and bool(e.ipv6_cidr_block) == ipv6 and e.rule_number != 32767
    ]
    if len(same) >= NACL_RULES_QUOTA:
        raise EC2ClientError(
            "NetworkAclEntryLimitExceeded", "The maximum number of network ACL entries has been reached."
        )
    return _ORIGINAL_CREATE_ENTRY(self, network_acl_id, rule_number, *args, **kwargs)


_ORIGINAL_CREATE_ENTRY = NetworkAclBackend.create_network_acl_entry


_ORIGINAL_TRANSACT = DynamoDBBackend.transact_write_items


def _transact_one_backup(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """moto's TransactWriteItems with one backup copy per table (requests are serialized: see
    ``emulated_aws``, so nothing else runs in moto's DynamoDB meanwhile)."""
    backups: dict[int, Any] = {}

    def deepcopy(value: Any, memo: Any = None) -> Any:
        if isinstance(value, Table):
            if id(value) not in backups:
                backups[id(value)] = copy.deepcopy(value)
            return backups[id(value)]
        return copy.deepcopy(value, memo)

    with mock.patch.object(dynamodb_models, "copy", SimpleNamespace(deepcopy=deepcopy)):
        _ORIGINAL_TRANSACT(self, transact_items)


def _serialized(original: Callable[..., Any], lock: threading.Lock) -> Callable[..., Any]:
    def call_action(self: Any) -> Any:
        with lock:
            return original(self)

    return call_action


@contextlib.contextmanager
def emulated_aws() -> Iterator[None]:
    """moto for every service, the real handlers behind Lambda, DynamoDB and EC2 requests serialized."""
    with (
        mock.patch.object(LambdaSimpleBackend, "invoke", _run_handler),
        mock.patch.object(DynamoHandler, "call_action", _serialized(DynamoHandler.call_action, threading.Lock())),
        mock.patch.object(DynamoDBBackend, "transact_write_items", _transact_one_backup),
        mock.patch.object(EC2Response, "call_action", _serialized(EC2Response.call_action, threading.Lock())),
        mock.patch.object(NetworkAclBackend, "create_network_acl_entry", _create_entry_with_quota),
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}),
    ):
        wiring.reset()
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        LAMBDA_FAULTS.clear()
        try:
            yield
        finally:
            _stop_executions()  # or their threads would outlive the emulated AWS they belong to
            LAMBDA_FAULTS.clear()
            wiring.reset()
            parameters.clear_caches()  # type: ignore[no-untyped-call]


def _stop_executions() -> None:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    running = [
        execution["executionArn"]
        for machine in sfn.list_state_machines()["stateMachines"]
        for execution in sfn.list_executions(stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING")[
            "executions"
        ]
    ]
    for arn in running:
        # Best effort: moto raises from inside its stub when an execution is still starting.
        with contextlib.suppress(Exception):
            sfn.stop_execution(executionArn=arn)
    deadline = time.monotonic() + 5
    while running and time.monotonic() < deadline:
        running = [a for a in running if sfn.describe_execution(executionArn=a)["status"] == "RUNNING"]
        for arn in running:
            with contextlib.suppress(Exception):
                sfn.stop_execution(executionArn=arn)
        time.sleep(0.05)


class Faults:
    """faults("ec2.CreateNetworkAclEntry", "RequestLimitExceeded", times=1) makes our code's next AWS
    call(s) of that operation fail as AWS would answer, before botocore sends them (times=-1: for
    good); faults.clear() ends them. Lambda tasks: faults.lambda_task("ApplyFunction", "Sandbox.Timedout")."""

    def __init__(self) -> None:
        self.session = boto3._get_default_session()._session
        self.registered: list[tuple[str, Any]] = []

    def __call__(
        self,
        operation: str,
        code: str,
        times: int = 1,
        status: int = 400,
        when: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> None:
        left = [times]

        def hook(**kwargs: Any) -> None:
            if left[0] != 0 and when(kwargs["params"].get("body") or {}):
                left[0] -= 1
                error: Any = {"Error": {"Code": code, "Message": "injected by the test"}}
                error["ResponseMetadata"] = {"HTTPStatusCode": status}
                raise ClientError(error, kwargs["model"].name)

        self.session.register(f"before-call.{operation}", hook)
        self.registered.append((f"before-call.{operation}", hook))
        wiring.reset()  # our clients are made again, with the hook

    def lambda_task(self, function: str, error_type: str, times: int = 1) -> None:
        LAMBDA_FAULTS[function] = [error_type] * times

    def clear(self) -> None:
        for event_name, hook in self.registered:
            self.session.unregister(event_name, hook)
        self.registered.clear()
        LAMBDA_FAULTS.clear()
        wiring.reset()


@dataclass
class Stack:
    """What a test can look at: the NACLs, the table, the executions."""

    nacl_ids: list[str]
    table_name: str
    state_machine_arn: str
    env: dict[str, str]
    rule_start: int
    rule_limit: int
    baseline: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # foreign rules at deploy time
    ec2: Any = field(default_factory=lambda: boto3.client("ec2", region_name=REGION))
    sfn: Any = field(default_factory=lambda: boto3.client("stepfunctions", region_name=REGION))
    ddb: Any = field(default_factory=lambda: boto3.resource("dynamodb", region_name=REGION))

    # -- NACLs ------------------------------------------------------------------------------

    def entries(self, nacl_id: str) -> list[dict[str, Any]]:
        acl = self.ec2.describe_network_acls(NetworkAclIds=[nacl_id])["NetworkAcls"][0]
        return list(acl["Entries"])

    def managed(self, nacl_id: str) -> list[tuple[int, bool, Any]]:
        """(rule number, egress, CIDR) of every entry in the managed range, sorted."""
        end = self.rule_start + self.rule_limit - 1
        return sorted(
            (e["RuleNumber"], e["Egress"], e.get("CidrBlock") or e.get("Ipv6CidrBlock"))
            for e in self.entries(nacl_id)
            if self.rule_start <= e["RuleNumber"] <= end
        )

    def foreign(self, nacl_id: str) -> list[dict[str, Any]]:
        end = self.rule_start + self.rule_limit - 1
        return sorted(
            (e for e in self.entries(nacl_id) if not self.rule_start <= e["RuleNumber"] <= end),
            key=lambda e: (e["RuleNumber"], e["Egress"]),
        )

    # -- table ------------------------------------------------------------------------------

    def items(self, prefix: str = "") -> list[dict[str, Any]]:
        table = self.ddb.Table(self.table_name)
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = table.scan(**kwargs)
            items.extend(i for i in page["Items"] if str(i["pk"]).startswith(prefix))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def block(self, block_id: str) -> dict[str, Any]:
        item = self.ddb.Table(self.table_name).get_item(Key={"pk": f"BLOCK#{block_id}", "sk": "BLOCK"}).get("Item")
        assert item is not None, f"no block {block_id}"
        return dict(item)

    # -- executions -------------------------------------------------------------------------

    def start(self, block_id: str) -> str:
        answer = self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn, name=block_id, input=json.dumps({"block_id": block_id})
        )
        return str(answer["executionArn"])

    def execution_arn(self, block_id: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{block_id}"

    def finished(self, execution_arn: str, timeout: float = 30) -> dict[str, Any]:
        answer = wait_until(
            lambda: (d := self.sfn.describe_execution(executionArn=execution_arn))["status"] != "RUNNING" and d,
            timeout,
            f"execution {execution_arn} still running",
        )
        return dict(answer)

    def path(self, execution_arn: str) -> list[str]:
        """The names of the states the execution entered, in order."""
        events = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def assert_nothing_written(stack: Stack) -> None:
    """No table item, no NACL entry in the range, no foreign rule changed, no execution."""
    assert stack.items() == []
    for nacl_id in stack.nacl_ids:
        assert stack.managed(nacl_id) == []
        assert stack.foreign(nacl_id) == stack.baseline[nacl_id]
    assert stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"] == []


class ItemCounter:
    """Counts the DynamoDB items our code reads (register on ``after-call.dynamodb``)."""

    def __init__(self) -> None:
        self.items = 0
        self.calls: dict[str, int] = {}

    def __call__(self, **kwargs: Any) -> None:
        name, parsed = kwargs["model"].name, kwargs["parsed"]
        self.calls[name] = self.calls.get(name, 0) + 1
        if "Items" in parsed:
            self.items += len(parsed["Items"])
        elif "Item" in parsed:
            self.items += 1
        elif "Responses" in parsed:
            self.items += sum(len(v) for v in parsed["Responses"].values())


def write_history(stack: Stack, first: int, last: int) -> None:
    """Ended blocks number first … last-1 straight into the table: history that no sweep should read."""
    with stack.ddb.Table(stack.table_name).batch_writer() as batch:
        for i in range(first, last):
            block_id = f"{i:032x}"
            batch.put_item(
                Item={
                    "pk": f"BLOCK#{block_id}",
                    "sk": "BLOCK",
                    "id": block_id,
                    "cidr": f"198.51.100.{i % 250}/32",
                    "family": 4,
                    "direction": "ingress",
                    "nacl_ids": stack.nacl_ids,
                    "state": "expired",
                    "created_at": 1_700_000_000 + i,
                    "expires_at": 1_700_000_600 + i,
                    "rules": {},
                    "ttl": 1_900_000_000,
                }
            )


def wait_until(predicate: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {message}")
        time.sleep(0.05)


def _function_code() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "# the handlers run in-process\n")
    return buffer.getvalue()


def substitute_asl(text: str, substitutions: dict[str, str]) -> str:
    """Apply DefinitionSubstitutions as CloudFormation does; fail on anything left unresolved."""
    result = re.sub(r"\$\{([A-Za-z0-9_]+)\}", lambda m: substitutions[m.group(1)], text)
    assert "${" not in result, "unresolved substitution in the ASL"
    return result


def deploy_stack(
    setenv: Callable[[str, str], None],
    nacls: int = 2,
    foreign_rules: list[dict[str, Any]] = FOREIGN_RULES,
    token: str = TOKEN,
    test_defaults: bool = True,
    **overrides: Any,
) -> Stack:
    """Create the stack's resources on moto from template.yaml; ``setenv`` gives this process the
    functions' environment (the handlers run in-process). Parameters as keyword arguments, over the
    template's defaults (and, with ``test_defaults``, over the tests' small RuleLimit and durations)."""
    template = load_template()
    resources = template["Resources"]
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    nacl_ids = []
    for _ in range(nacls):
        nacl_id = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
        for rule in foreign_rules:
            ec2.create_network_acl_entry(NetworkAclId=nacl_id, **rule)
        nacl_ids.append(nacl_id)

    params = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
    params["NetworkAclIds"] = nacl_ids
    if test_defaults:
        params.update({"RuleNumberStart": 10, "RuleLimit": 5, "DefaultDurationSeconds": 30})
    params.update(overrides)

    # The table, exactly as the template declares it.
    table_props = dict(resources["BlocksTable"]["Properties"])
    table_name = "autoblock-blocks"
    ddb = boto3.client("dynamodb", region_name=REGION)
    ddb.create_table(
        TableName=table_name,
        **{k: table_props[k] for k in ("BillingMode", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes")},
    )
    secret_arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="autoblock-token", SecretString=token
    )["ARN"]

    refs: dict[str, Any] = {
        **params,
        "AWS::StackName": "autoblock",
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "BlocksTable": table_name,
        "ApiTokenSecret": secret_arn,
        "AWS::Partition": "aws",
        "Condition:GenerateToken": True,
    }
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="autoblock-test", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam = boto3.client("lambda", region_name=REGION)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    state_machine_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:autoblock-block"
    refs["BlockStateMachine"] = state_machine_arn
    globals_env = template["Globals"]["Function"]["Environment"]["Variables"]
    env: dict[str, str] = {}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        own = resource["Properties"].get("Environment", {}).get("Variables", {})
        variables = {k: str(v) for k, v in resolve({**globals_env, **own}, refs).items()}
        answer = lam.create_function(
            FunctionName=name,
            Runtime=template["Globals"]["Function"]["Runtime"],
            Role=role,
            Handler=resource["Properties"]["Handler"],
            Code={"ZipFile": _function_code()},
            Environment={"Variables": variables},
        )
        refs[f"{name}.Arn"] = answer["FunctionArn"]
        env.update(variables)

    machine = resources["BlockStateMachine"]["Properties"]
    definition = substitute_asl(
        (ROOT / machine["DefinitionUri"]).read_text(),
        {k: str(v) for k, v in resolve(machine["DefinitionSubstitutions"], refs).items()},
    )
    name = resolve(machine["Name"], refs)
    created = sfn.create_state_machine(name=name, definition=definition, roleArn=role, type="STANDARD")
    assert created["stateMachineArn"] == state_machine_arn == env["STATE_MACHINE_ARN"]

    # How long POST /blocks waits for the block to be applied: generous in tests, so that a loaded
    # machine still answers with an applied block (a fast one answers as soon as it is).
    env["API_WAIT_SECONDS"] = "20" if test_defaults else "5"
    for key, value in env.items():
        setenv(key, value)
    wiring.reset()
    stack = Stack(
        nacl_ids, table_name, state_machine_arn, env, int(params["RuleNumberStart"]), int(params["RuleLimit"])
    )
    stack.baseline = {nacl_id: stack.foreign(nacl_id) for nacl_id in nacl_ids}
    assert all(len(rules) >= len(foreign_rules) for rules in stack.baseline.values())
    return stack
