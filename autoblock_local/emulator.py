"""An emulated autoblock stack on moto, built from template.yaml and the real ASL file: the local
stack (autoblock_local.stack), the integration tests (tests/integration/conftest.py) and the
benchmark all run on it. Test scaffolding (fault injection, item counters, hand-written items)
lives in tests/support, not here.

moto internals are touched here and nowhere else:
* moto's Lambda without Docker only echoes, so ``LambdaSimpleBackend.invoke`` is patched to run the
  real handler in-process; an exception becomes ``FunctionError`` with ``errorType`` = class name,
  as Lambda reports it, so the ASL's Retry and Catch see our error names.
* moto's DynamoDB and EC2 do not apply a conditional write atomically against other threads;
  DynamoDB and EC2 do. Their request handling is serialized so concurrency tests show our races,
  not moto's (WAF's too: see below).
* moto's TransactWriteItems backs up the whole table once per item of the transaction (a deep copy
  each); here it backs up only the items the transaction touches, which is all a rollback needs.
  Otherwise a transaction's cost grows with the table times its items, which no DynamoDB does (a
  burst of thousands of blocks would slow down quadratically).
* AWS WAF's limits, which moto's wafv2 (IP sets with lock tokens) does not enforce: CreateIPSet and
  UpdateIPSet with more than ``WAF_ADDRESSES_PER_SET`` (10,000) addresses are refused with
  ``WAFLimitsExceededException``, as AWS refuses them; and a second call of the same Create/Update/Put
  action (``WAF_WRITE_ACTIONS``) within ``WAF_WRITE_INTERVAL`` (1 s) of the last one let through, in
  the same account and Region, is refused with ``WAFLimitsExceededException`` saying the request rate
  was exceeded (AWS's quota: one call of each such action a second per account and Region; CLOUDFRONT
  scope counts in us-east-1, where its calls are made). A refused call does not move the window; one
  let through does, whatever its outcome (a stale lock token still spent the call). The backend's
  write methods are wrapped to do so, and each call is recorded in ``WAF_WRITES`` (with the
  addresses it gave the set and when moto had applied it: the benchmark's expiry lag). Calls made inside
  ``waf_unpaced()`` (the emulator's own set-up, a test's foreign writer) are neither limited nor
  counted. moto checks an IP set's lock token and then replaces the set in two steps, so two updates
  with the same token could both pass on two threads; WAF's request handling is serialized, as
  DynamoDB's and EC2's, so a stale token always gets ``WAFOptimisticLockException``.
* moto's Step Functions parses the ASL again for every execution (``AmazonStateLanguageParser.parse``,
  about 0.4 s of CPU, twice per StartExecution); a definition is parsed once here and its program
  shared (``_parsed_once``: the program keeps no state of its own), so a burst of thousands of
  executions costs what AWS's would, not minutes of parsing. Likewise each JSONPath of a state
  (``InputPath``, ``Parameters``' ``.$`` fields, ``ResultPath``, ...) is parsed by jsonpath_ng's
  PLY parser (about 7 ms of CPU) every time a state runs: ``json_path.parse`` and
  ``result_path.parse`` are memoized (``_path_parsed_once``; a parsed path is only read when used).
* Nothing outlives the emulated AWS: moto runs each execution in background threads it lists in
  ``moto.stepfunctions.parser.utils.TMP_THREADS`` (the execution, its program, one per Task attempt).
  When ``emulated_aws()`` closes it stops every running execution, then joins each thread started
  meanwhile, and fails if one is still alive or an execution still RUNNING. For a stop to end an
  execution at once, two waits of moto's interpreter are made interruptible:
  ``WaitFunction._wait_interval`` (a Wait state) sleeps in slices (a quarter of a second, growing
  to two) and ends as soon as its execution is no longer running (moto's own wait misses a
  StopExecution that lands before it starts waiting, and then sleeps to the end of the Wait), and
  the Retry interval (``time.sleep`` in ``retrier_decl``) ends when the emulator closes.
* Several accounts (organization mode): moto's AssumeRole succeeds for any role ARN, even one that
  does not exist, and the credentials act in that ARN's account. ``STSBackend.assume_role`` is
  patched to refuse (``AccessDenied``, as AWS does) a role that does not exist in its account, so a
  member whose role was deleted behaves as it would on AWS. The emulator itself sets members up
  through ``OrganizationAccountAccessRole`` (the role AWS Organizations creates in each account it
  creates), which is let through unchecked.
* Who makes a call, for the tests' IAM evaluation (tests/support/iam.py): moto's Step Functions
  interpreter signs every call of an execution (its Lambda invocations) with the access key
  ``STATE_MACHINE_ACCESS_KEY``; code that acts as another principal of the template without being one
  of its functions (a rule delivering an event to its target) runs inside ``acting_as(<logical id>)``.
  ``nacl_tags`` reads a NACL's tags from moto's EC2 without an API call (IAM conditions on tags).
* Nothing reaches a real endpoint: moto answers the requests it serves before botocore sends them, so
  botocore's ``URLLib3Session.send`` only ever sees a request moto does not serve (a service it does
  not mock, or a client used after the emulator closed). It refuses every one with
  ``UnservedRequest`` naming the URL, except to a loopback host (the local stack's own servers).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import importlib
import inspect
import io
import ipaddress
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
from urllib.parse import urlsplit

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.awsrequest import AWSPreparedRequest
from botocore.httpsession import URLLib3Session
from cfnlint.decode import decode
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.models.network_acls import NetworkAclBackend
from moto.ec2.responses import EC2Response
from moto.iam.exceptions import NotFoundException
from moto.iam.models import iam_backends
from moto.stepfunctions.parser import utils as sfn_utils
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.utils import json_path
from moto.sts.exceptions import STSClientError
from moto.sts.models import STSBackend
from moto.wafv2.exceptions import WAFv2ClientError
from moto.wafv2.models import GLOBAL_REGION, WAFV2Backend
from moto.wafv2.responses import WAFV2Response

from autoblock.dal.items import to_block
from autoblock.handlers import wiring
from autoblock.logic.slots import targets
from autoblock.models import Ticket

ROOT = Path(__file__).resolve().parents[1]
ASL_PATH = ROOT / "statemachines" / "block.asl.json"
EVENTS = ROOT / "events"
TOKEN = "test-token-0123456789abcdefghijklmnopqrstuvwxyzABCD"  # noqa: S105 - the tests' token on emulated AWS
REGION = "us-east-1"
ACCOUNT = "123456789012"
MEMBER_REGIONS = (REGION, "eu-west-1")  # the Regions each emulated member account has NACLs in
SETUP_ROLE = "OrganizationAccountAccessRole"
MANAGED_TAG = {"Key": "autoblock:managed", "Value": "true"}
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


class FakeLambdaContext(LambdaContext):
    """The LambdaContext a handler gets when it runs in-process."""

    def __init__(self, function_name: str = "autoblock-test") -> None:
        self._function_name = function_name
        self._function_version = "$LATEST"
        self._invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self._memory_limit_in_mb = 256
        self._aws_request_id = "00000000-0000-0000-0000-000000000000"
        self._log_group_name = f"/aws/lambda/{function_name}"
        self._log_stream_name = "local"

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
        if fn == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], resolve(arg[1], refs))
            scope = {**refs, **variables}
            return re.sub(r"\$\{([A-Za-z0-9_:.]+)\}", lambda m: str(scope[m.group(1)]), text)
        if fn == "Fn::Select":
            index, items = arg
            return resolve(items, refs)[int(resolve(index, refs))]
        if fn == "Fn::Split":
            delimiter, text = arg
            return str(resolve(text, refs)).split(delimiter)
        if fn == "Fn::If":
            condition, yes, no = arg
            return resolve(yes if refs[f"Condition:{condition}"] else no, refs)
    if isinstance(node, dict):
        return {k: resolve(v, refs) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, refs) for v in node]
    return node


STATE_MACHINE_ACCESS_KEY = "ak"  # moto.stepfunctions.parser.asl.utils.boto_client.boto_client_for
ACTING: contextvars.ContextVar[str | None] = contextvars.ContextVar("ACTING", default=None)


@contextlib.contextmanager
def acting_as(logical_id: str) -> Iterator[None]:
    """The AWS calls made inside act as the template's resource ``logical_id`` (e.g. the rule that
    delivers an event to the state machine), for the tests' IAM evaluation."""
    token = ACTING.set(logical_id)
    try:
        yield
    finally:
        ACTING.reset(token)


def nacl_tags(nacl_id: str, account: str = ACCOUNT, region: str = REGION) -> dict[str, str]:
    """The NACL's tags as moto's EC2 holds them, read without an API call."""
    return dict(ec2_backends[account][region].tags.get(nacl_id, {}))


def condition(node: Any, refs: dict[str, Any]) -> bool:
    """A template Condition's value, its parameters and earlier conditions taken from ``refs``."""
    ((fn, arg),) = node.items()
    if fn == "Fn::Equals":
        left, right = (str(resolve(v, refs)) for v in arg)
        return left == right
    if fn == "Fn::Not":
        return not condition(arg[0], refs)
    if fn == "Fn::And":
        return all(condition(a, refs) for a in arg)
    if fn == "Fn::Or":
        return any(condition(a, refs) for a in arg)
    if fn == "Condition":
        return bool(refs[f"Condition:{arg}"])
    raise ValueError(f"cannot evaluate the condition function {fn}")


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
    module_name, _, attr = str(fn.handler).rpartition(".")
    handler = getattr(importlib.import_module(module_name), attr)  # looked up on each call, as a new deploy would
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


WAF_ADDRESSES_PER_SET = 10_000  # AWS WAF's addresses per IP set; moto enforces none
WAF_WRITE_INTERVAL = 1.0  # seconds between two calls of one WAF Create/Update/Put action, per account and Region
WAF_WRITE_ACTIONS = {  # moto's WAFV2Backend method → the action AWS rate-limits
    "create_ip_set": "CreateIPSet",
    "update_ip_set": "UpdateIPSet",
    "create_web_acl": "CreateWebACL",
    "update_web_acl": "UpdateWebACL",
    "create_rule_group": "CreateRuleGroup",
    "update_rule_group": "UpdateRuleGroup",
    "create_regex_pattern_set": "CreateRegexPatternSet",
    "update_regex_pattern_set": "UpdateRegexPatternSet",
    "put_logging_configuration": "PutLoggingConfiguration",
}
_WAF_UNPACED: contextvars.ContextVar[bool] = contextvars.ContextVar("_WAF_UNPACED", default=False)


class WAFLimitsExceededException(WAFv2ClientError):
    """AWS WAF's answer to a call past one of its limits (botocore sees the code as the class name)."""

    def __init__(self, message: str) -> None:
        super().__init__("WAFLimitsExceededException", message)


@dataclass(frozen=True)
class WafWrite:
    """One WAF Create/Update/Put call moto's backend received, and how the emulator answered it."""

    at: float  # time.monotonic()
    action: str  # UpdateIPSet, CreateIPSet, ...
    account: str
    region: str  # CLOUDFRONT's global scope counts in us-east-1, where its calls are made
    name: str  # the resource's name
    outcome: str  # "ok", or the error code it was refused with
    throttled: bool  # refused for the request rate (outcome WAFLimitsExceededException)
    paced: bool  # False: made inside ``waf_unpaced`` (set-up, a test's foreign writer), not rate-limited
    done: float = 0.0  # time.time() once moto had answered: for UpdateIPSet, when the set changed
    addresses: tuple[str, ...] = ()  # what a CreateIPSet or UpdateIPSet call gave the set


WAF_WRITES: list[WafWrite] = []  # every WAF write since the emulated AWS opened (the benchmark reads it)
_WAF_LAST: dict[tuple[str, str, str], float] = {}  # (account, Region, action) → its last call let through
_WAF_LOCK = threading.Lock()


@contextlib.contextmanager
def waf_unpaced() -> Iterator[None]:
    """WAF writes made inside are not rate-limited and do not count against the rate: the emulator's
    own set-up (deploy_stack) and a test's foreign writer, never the code under test."""
    token = _WAF_UNPACED.set(True)
    try:
        yield
    finally:
        _WAF_UNPACED.reset(token)


def _waf_limited(action: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """moto's WAF write ``action``, refused as AWS refuses it past the rate and the set size."""

    signature = inspect.signature(original)

    def call(self: WAFV2Backend, *args: Any, **kwargs: Any) -> Any:
        given = signature.bind(self, *args, **kwargs).arguments  # moto passes them by position
        name = str(given.get("name", ""))
        region = "us-east-1" if self.region_name == GLOBAL_REGION else self.region_name
        paced = not _WAF_UNPACED.get()
        now = time.monotonic()
        key = (self.account_id, region, action)
        with _WAF_LOCK:
            throttled = paced and now - _WAF_LAST.get(key, -WAF_WRITE_INTERVAL) < WAF_WRITE_INTERVAL
            if paced and not throttled:
                _WAF_LAST[key] = now
        outcome = "ok"
        try:
            if throttled:
                raise WAFLimitsExceededException(
                    f"AWS WAF couldn't perform the operation because the request rate was exceeded: at most one "
                    f"{action} call every {WAF_WRITE_INTERVAL:g} s per account and Region."
                )
            addresses = given.get("addresses") or []
            if action in ("CreateIPSet", "UpdateIPSet") and len(addresses) > WAF_ADDRESSES_PER_SET:
                raise WAFLimitsExceededException(
                    "AWS WAF couldn't perform the operation because you exceeded your resource limit: an IP set "
                    f"holds at most {WAF_ADDRESSES_PER_SET} addresses ({len(addresses)} given)."
                )
            return original(self, *args, **kwargs)
        except WAFv2ClientError as error:
            outcome = error.error_type
            raise
        finally:
            with _WAF_LOCK:
                WAF_WRITES.append(
                    WafWrite(
                        now,
                        action,
                        self.account_id,
                        region,
                        name,
                        outcome,
                        throttled,
                        paced,
                        time.time(),
                        tuple(str(a) for a in given.get("addresses") or ()),
                    )
                )

    return call


_ORIGINAL_TRANSACT = DynamoDBBackend.transact_write_items


def _transact_one_backup(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """moto's TransactWriteItems with a backup of only the items it touches (requests are
    serialized: see ``emulated_aws``, so nothing else runs in moto's DynamoDB meanwhile). moto backs
    up each whole table, which costs the table's size on every transaction; a rollback only needs
    the items the transaction wrote, each put back as it was (or removed if it did not exist)."""
    touched: list[tuple[Table, Any, Any, Any]] = []
    for entry in transact_items:
        op_type, op = next(iter(entry.items()))
        table = self.tables.get(op.get("TableName"))
        if table is None:
            continue
        key = op["Item"] if op_type == "Put" else op.get("Key", {})
        if table.hash_key_attr not in key or (table.range_key_attr and table.range_key_attr not in key):
            continue  # a malformed key: moto's own validation refuses it below, before any write
        hash_value = DynamoType(key[table.hash_key_attr])
        range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        current = table.get_item(hash_value, range_value)
        touched.append((table, hash_value, range_value, copy.deepcopy(current)))

    def keep(value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    try:
        with mock.patch.object(dynamodb_models, "copy", SimpleNamespace(deepcopy=keep)):
            _ORIGINAL_TRANSACT(self, transact_items)
    except Exception:
        for table, hash_value, range_value, original in reversed(touched):
            if range_value is None:
                if original is None:
                    table.items.pop(hash_value, None)
                else:
                    table.items[hash_value] = original
            elif original is None:
                table.items[hash_value].pop(range_value, None)
            else:
                table.items[hash_value][range_value] = original
        raise


_PARSE = AmazonStateLanguageParser.parse
WAIT_CHECK_MAX = 2.0


@functools.lru_cache(maxsize=16)
def _parsed_once(definition: str) -> Any:
    """moto parses a state machine's ASL on every StartExecution, twice (a check, then the program its
    worker runs): about 0.4 s of CPU each time with its ANTLR parser. The parsed program holds no
    execution's state (that is all in each execution's Environment), so one parse per definition
    serves every execution, as AWS compiles a definition once."""
    return _PARSE(definition)


def _path_parsed_once(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """jsonpath_ng's ``parse``, once per path: moto's Step Functions parses a state's JSONPaths each
    time the state runs (about 7 ms of CPU each, a dozen per block's execution)."""
    return functools.lru_cache(maxsize=1024)(parse)


def _serialized(original: Callable[..., Any], lock: threading.Lock) -> Callable[..., Any]:
    def call_action(self: Any) -> Any:
        with lock:
            return original(self)

    return call_action


class UnservedRequest(RuntimeError):
    """A request emulated AWS does not serve: refused before anything is sent."""


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse_unserved(self: URLLib3Session, request: AWSPreparedRequest) -> Any:
    if is_loopback(request.url):
        return _ORIGINAL_SEND(self, request)
    raise UnservedRequest(
        f"emulated AWS does not serve {request.method} {request.url}: refused, nothing was sent "
        "(a service moto does not mock, or a client used after the emulator closed)"
    )


_ORIGINAL_SEND = URLLib3Session.send


_ORIGINAL_ASSUME_ROLE = STSBackend.assume_role


def _assume_existing_role(
    self: STSBackend, region_name: str, role_session_name: str, role_arn: str, **rest: Any
) -> Any:
    match = re.match(r"^arn:[\w-]+:iam::(\d{12}):role/(?:.*/)?([^/]+)$", role_arn)
    if match is None or match.group(2) != SETUP_ROLE:
        account, name = match.groups() if match else ("", "")
        try:
            iam_backends[account]["aws"].get_role(name)
        except (NotFoundException, KeyError):
            raise STSClientError(
                "AccessDenied", f"User is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
            ) from None
    return _ORIGINAL_ASSUME_ROLE(
        self, region_name=region_name, role_session_name=role_session_name, role_arn=role_arn, **rest
    )


def _wait_interval(self: WaitFunction, env: Any, wait_seconds: int) -> None:
    """moto's Wait, ending as soon as its execution stops: a stop wakes the wait at once; one that
    lands between the check and the wait (moto sets and clears its event) is seen at the next check,
    a quarter of a second later at first, then less often (at most every WAIT_CHECK_MAX seconds), so
    thousands of waiting executions do not keep the machine busy waking up."""
    deadline = time.monotonic() + wait_seconds
    check = 0.25
    while env.is_running() and (left := deadline - time.monotonic()) > 0:
        env.program_state_event.wait(min(left, check))
        check = min(check * 2, WAIT_CHECK_MAX)


@contextlib.contextmanager
def emulated_aws() -> Iterator[None]:
    """moto for every service, the real handlers behind Lambda, DynamoDB, EC2 and WAF requests
    serialized, WAF's limits enforced; nothing it starts outlives it, and no request leaves the machine."""
    closing = threading.Event()  # cuts the Retry intervals of executions short when the emulator closes
    first_thread = len(sfn_utils.TMP_THREADS)
    with (
        mock.patch.object(URLLib3Session, "send", _refuse_unserved),
        mock.patch.object(LambdaSimpleBackend, "invoke", _run_handler),
        mock.patch.object(DynamoHandler, "call_action", _serialized(DynamoHandler.call_action, threading.Lock())),
        mock.patch.object(DynamoDBBackend, "transact_write_items", _transact_one_backup),
        mock.patch.object(EC2Response, "call_action", _serialized(EC2Response.call_action, threading.Lock())),
        mock.patch.object(WAFV2Response, "call_action", _serialized(WAFV2Response.call_action, threading.Lock())),
        contextlib.ExitStack() as waf_limits,
        mock.patch.object(NetworkAclBackend, "create_network_acl_entry", _create_entry_with_quota),
        mock.patch.object(WaitFunction, "_wait_interval", _wait_interval),
        mock.patch.object(STSBackend, "assume_role", _assume_existing_role),
        mock.patch.object(retrier_decl, "time", SimpleNamespace(sleep=closing.wait)),
        mock.patch.object(AmazonStateLanguageParser, "parse", staticmethod(_parsed_once)),
        mock.patch.object(json_path, "parse", _path_parsed_once(vars(json_path)["parse"])),
        mock.patch.object(result_path, "parse", _path_parsed_once(vars(result_path)["parse"])),
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}),
    ):
        for method, action in WAF_WRITE_ACTIONS.items():
            waf_limits.enter_context(
                mock.patch.object(WAFV2Backend, method, _waf_limited(action, getattr(WAFV2Backend, method)))
            )
        with _WAF_LOCK:
            WAF_WRITES.clear()
            _WAF_LAST.clear()
        wiring.reset()
        try:
            yield
        finally:
            left = _end_executions(first_thread, closing)
            wiring.reset()
            DEPLOYED.clear()
    if left:  # only when the body succeeded: a failing test reports its own error first
        raise RuntimeError(f"emulated AWS closed with work still running: {left}")


def _end_executions(first_thread: int, closing: threading.Event, timeout: float = 60) -> list[str]:
    """Stop every running execution and join every thread moto started for executions since
    ``first_thread``; what is still running after ``timeout`` seconds, as readable lines."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    deadline = time.monotonic() + timeout
    running = _running(sfn)
    while running and time.monotonic() < deadline:
        for arn in running:
            # moto raises from inside its stub while an execution is still starting: try again.
            with contextlib.suppress(Exception):
                sfn.stop_execution(executionArn=arn)
        time.sleep(0.05)
        running = _running(sfn)
    closing.set()
    threads = sfn_utils.TMP_THREADS[first_thread:]
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [t for t in threads if t.is_alive()]
    # moto never forgets a thread; the ended ones go, or the list grows with every test.
    sfn_utils.TMP_THREADS[first_thread:] = alive
    return [f"execution {arn} RUNNING" for arn in _running(sfn)] + [f"thread {t.name} alive" for t in alive]


def _running(sfn: Any) -> list[str]:
    pages = sfn.get_paginator("list_executions")
    return [
        execution["executionArn"]
        for machine in sfn.list_state_machines()["stateMachines"]
        for page in pages.paginate(stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING")
        for execution in page["executions"]
    ]


def member_account(index: int) -> str:
    """The id of the ``index``-th emulated member account: 111111111111, 222222222222, …"""
    return str(index + 1) * 12 if index < 9 else f"{100000000000 + index}"


def member_session(account: str) -> Any:
    """A boto3 session acting in ``account`` (through OrganizationAccountAccessRole)."""
    arn = f"arn:aws:iam::{account}:role/{SETUP_ROLE}"
    credentials = boto3.client("sts", region_name=REGION).assume_role(RoleArn=arn, RoleSessionName="emulator")[
        "Credentials"
    ]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


@dataclass
class Member:
    """An emulated member account. In each of its Regions: the NACL configured in
    MemberNetworkAclIds (tagged ``autoblock:managed=true``), a workload subnet whose NACL is tagged
    but not configured, and a subnet whose NACL is not tagged (NaclFromFinding)."""

    account: str
    session: Any
    nacls: dict[str, str] = field(default_factory=dict)  # region → the configured NACL
    workload_subnets: dict[str, str] = field(default_factory=dict)  # region → subnet of a tagged NACL
    workload_nacls: dict[str, str] = field(default_factory=dict)
    untagged_subnets: dict[str, str] = field(default_factory=dict)  # region → subnet of an untagged NACL
    untagged_nacls: dict[str, str] = field(default_factory=dict)

    def ec2(self, region: str) -> Any:
        return self.session.client("ec2", region_name=region)

    def ref(self, region: str, acl_id: str | None = None) -> str:
        """The reference (``account:region:acl-id``) autoblock uses for one of its NACLs."""
        return f"{self.account}:{region}:{acl_id or self.nacls[region]}"


def create_member(index: int, role_name: str, regions: tuple[str, ...] = MEMBER_REGIONS) -> Member:
    """A member account with its NACLs (each holding the customer's own rules) and the member role."""
    account = member_account(index)
    member = Member(account, member_session(account))
    member.session.client("iam").create_role(
        RoleName=role_name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
    )
    tagged = [{"ResourceType": "network-acl", "Tags": [MANAGED_TAG]}]
    for region in regions:
        ec2 = member.ec2(region)
        vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
        for name, cidr, tags in (
            ("nacls", None, tagged),
            ("workload", "10.1.1.0/24", tagged),
            ("untagged", "10.1.2.0/24", []),
        ):
            acl_id = ec2.create_network_acl(VpcId=vpc, TagSpecifications=tags)["NetworkAcl"]["NetworkAclId"]
            for rule in FOREIGN_RULES:
                ec2.create_network_acl_entry(NetworkAclId=acl_id, **rule)
            if cidr is None:
                member.nacls[region] = acl_id
                continue
            subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]
            acls = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [subnet]}])
            association = next(
                a["NetworkAclAssociationId"]
                for acl in acls["NetworkAcls"]
                for a in acl["Associations"]
                if a["SubnetId"] == subnet
            )
            ec2.replace_network_acl_association(AssociationId=association, NetworkAclId=acl_id)
            getattr(member, f"{name}_subnets")[region] = subnet
            getattr(member, f"{name}_nacls")[region] = acl_id
    return member


@dataclass(frozen=True)
class WafSet:
    """One of the stack's WAF IP sets, as deploy_stack created it from template.yaml."""

    logical_id: str  # WafIpSetV4x1, ...
    name: str  # autoblock-v4-1, ...
    id: str
    arn: str
    scope: str  # REGIONAL or CLOUDFRONT
    family: int  # 4 or 6
    index: int  # 1-based, among the sets of its family, in the template's order

    @property
    def region(self) -> str:
        """Where its calls go: us-east-1 for CLOUDFRONT, as AWS requires; else the stack's Region."""
        return "us-east-1" if self.scope == "CLOUDFRONT" else REGION

    @property
    def entry(self) -> str:
        """The set as WAF_IP_SETS names it: ``<family>:<name>:<id>``."""
        return f"{self.family}:{self.name}:{self.id}"


def create_waf_sets(resources: dict[str, Any], refs: dict[str, Any]) -> list[WafSet]:
    """Each AWS::WAFv2::IPSet of the template whose Condition holds, created on moto's wafv2 with
    its resolved properties (outside the rate limit: CloudFormation's calls are not ours); ``refs``
    gains what its Ref (``name|id|scope``) and GetAtt Id and Arn resolve to."""
    created: list[WafSet] = []
    with waf_unpaced():
        for logical_id, resource in resources.items():
            if resource["Type"] != "AWS::WAFv2::IPSet":
                continue
            if "Condition" in resource and not refs[f"Condition:{resource['Condition']}"]:
                continue
            props = resolve(resource.get("Properties", {}), refs)
            scope = str(props["Scope"])
            wafv2 = boto3.client("wafv2", region_name="us-east-1" if scope == "CLOUDFRONT" else REGION)
            given = ("Name", "Scope", "IPAddressVersion", "Addresses", "Description", "Tags")
            summary = wafv2.create_ip_set(**{k: props[k] for k in given if props.get(k) is not None})["Summary"]
            family = 6 if props["IPAddressVersion"] == "IPV6" else 4
            index = 1 + sum(1 for s in created if s.family == family)
            found = WafSet(logical_id, summary["Name"], summary["Id"], summary["ARN"], scope, family, index)
            refs[logical_id] = f"{found.name}|{found.id}|{scope}"
            refs[f"{logical_id}.Id"] = found.id
            refs[f"{logical_id}.Arn"] = found.arn
            created.append(found)
    return created


@dataclass
class Stack:
    """What a test can look at: the NACLs, the table, the executions."""

    nacl_ids: list[str]
    table_name: str
    state_machine_arn: str
    env: dict[str, str]
    rule_start: int
    rule_limit: int
    refs: dict[str, Any] = field(default_factory=dict)  # what the template's intrinsic functions resolve to
    baseline: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # foreign rules at deploy time
    ec2: Any = field(default_factory=lambda: boto3.client("ec2", region_name=REGION))
    sfn: Any = field(default_factory=lambda: boto3.client("stepfunctions", region_name=REGION))
    ddb: Any = field(default_factory=lambda: boto3.resource("dynamodb", region_name=REGION))
    members: list[Member] = field(default_factory=list)  # organization mode: the member accounts
    waf_sets: list[WafSet] = field(default_factory=list)  # WafScope other than NONE: the stack's IP sets
    wafv2_clients: dict[str, Any] = field(default_factory=dict)

    # -- WAF IP sets ------------------------------------------------------------------------

    def waf_set(self, which: str | int | WafSet, index: int = 1) -> WafSet:
        """One of the stack's IP sets: by name (``autoblock-v4-1``), or by family (4 or 6) and index."""
        if isinstance(which, WafSet):
            return which
        for found in self.waf_sets:
            if found.name == which or (found.family == which and found.index == index):
                return found
        raise KeyError(f"the stack has no WAF IP set {which!r} (index {index}): {[s.name for s in self.waf_sets]}")

    def _wafv2(self, found: WafSet) -> Any:
        """One client per Region, made once: making a client costs tens of milliseconds of CPU, and a
        test or the bench may read the sets many times a second."""
        if found.region not in self.wafv2_clients:
            self.wafv2_clients[found.region] = boto3.client("wafv2", region_name=found.region)
        return self.wafv2_clients[found.region]

    def waf_read(self, which: str | int | WafSet, index: int = 1) -> tuple[list[str], str]:
        """(addresses, lock token) of one of the stack's IP sets, read through the API."""
        found = self.waf_set(which, index)
        answer = self._wafv2(found).get_ip_set(Name=found.name, Scope=found.scope, Id=found.id)
        return list(answer["IPSet"]["Addresses"]), str(answer["LockToken"])

    def waf_addresses(self, which: str | int | WafSet, index: int = 1) -> list[str]:
        """The addresses one of the stack's IP sets holds, as GetIPSet returns them."""
        return self.waf_read(which, index)[0]

    def waf_fill(self) -> dict[str, int]:
        """Set name → how many addresses it holds."""
        return {found.name: len(self.waf_addresses(found)) for found in self.waf_sets}

    def foreign_waf_update(
        self, which: str | int | WafSet, index: int = 1, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()
    ) -> str:
        """Another writer's update of one of the stack's IP sets (read, then UpdateIPSet with its
        token): the set's lock token changes, so an update of ours that read before fails with
        WAFOptimisticLockException. Outside the rate limit (``waf_unpaced``). The new lock token."""
        found = self.waf_set(which, index)
        with waf_unpaced():
            addresses, token = self.waf_read(found)
            kept = [a for a in addresses if a not in remove]
            wanted = kept + [a for a in add if a not in kept]
            answer = self._wafv2(found).update_ip_set(
                Name=found.name, Scope=found.scope, Id=found.id, Addresses=wanted, LockToken=token
            )
        return str(answer["NextLockToken"])

    # -- NACLs ------------------------------------------------------------------------------

    def member(self, account: str) -> Member:
        return next(m for m in self.members if m.account == account)

    @property
    def member_refs(self) -> list[str]:
        """Every member NACL configured in MemberNetworkAclIds, as autoblock names it."""
        return [m.ref(region) for m in self.members for region in sorted(m.nacls)]

    def ec2_of(self, nacl_id: str) -> tuple[Any, str]:
        """The EC2 client that sees a NACL (the member's own for ``account:region:acl-id``) and its id."""
        if ":" not in nacl_id:
            return self.ec2, nacl_id
        account, region, acl_id = nacl_id.split(":", 2)
        return self.member(account).ec2(region), acl_id

    def entries(self, nacl_id: str) -> list[dict[str, Any]]:
        ec2, acl_id = self.ec2_of(nacl_id)
        acl = ec2.describe_network_acls(NetworkAclIds=[acl_id])["NetworkAcls"][0]
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
        """Start a registered block's execution as the API does, with its ticket."""
        block = to_block(self.block(block_id))
        reserved = set(block.rules) == set(targets(block.nacl_ids, block.direction))
        answer = self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn, name=block_id, input=Ticket.of(block, reserved).model_dump_json()
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


DEPLOYED: list[Stack] = []  # the stacks deployed on the emulated AWS that is open, latest last


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
    members: int = 0,
    foreign_rules: list[dict[str, Any]] = FOREIGN_RULES,
    token: str = TOKEN,
    test_defaults: bool = True,
    **overrides: Any,
) -> Stack:
    """Create the stack's resources on moto from template.yaml; ``setenv`` gives this process the
    functions' environment (the handlers run in-process). Parameters as keyword arguments, over the
    template's defaults (and, with ``test_defaults``, over the tests' small RuleLimit and durations).
    ``members``: organization mode with that many member accounts, each with a NACL in each of
    MEMBER_REGIONS (MemberNetworkAclIds) and its member role. ``WafScope="REGIONAL"`` (or
    ``"CLOUDFRONT"``, in us-east-1) and ``WafIpSetsPerFamily=n``: the template's IP sets are created on
    moto's wafv2 (``Stack.waf_sets``) and the functions' WAF_IP_SETS names them."""
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
    role_name = str(params.get("MemberRoleName") or "autoblock-member")
    member_accounts = [create_member(i, role_name) for i in range(members)]
    if member_accounts:
        params["MemberNetworkAclIds"] = ",".join(m.ref(r) for m in member_accounts for r in sorted(m.nacls))

    # The table, exactly as the template declares it.
    table_props = dict(resources["BlocksTable"]["Properties"])
    table_name = "autoblock-blocks"
    ddb = boto3.client("dynamodb", region_name=REGION)
    table_arn = ddb.create_table(
        TableName=table_name,
        **{k: table_props[k] for k in ("BillingMode", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes")},
    )["TableDescription"]["TableArn"]
    secret_arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="autoblock-token", SecretString=token
    )["ARN"]

    refs: dict[str, Any] = {
        **params,
        "AWS::StackName": "autoblock",
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "BlocksTable": table_name,
        "BlocksTable.Arn": table_arn,
        "ApiTokenSecret": secret_arn,
        "AWS::Partition": "aws",
        "AWS::NoValue": None,
    }
    for name, node in template.get("Conditions", {}).items():  # in order: a condition may use an earlier one
        refs[f"Condition:{name}"] = condition(node, refs)
    waf_sets = create_waf_sets(resources, refs)
    if str(params.get("WafScope") or "NONE") != "NONE" and not waf_sets:
        raise ValueError(f"WafScope={params['WafScope']}, but template.yaml creates no AWS::WAFv2::IPSet")
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
        refs[name] = answer["FunctionName"]
        refs[f"{name}.Arn"] = answer["FunctionArn"]
        env.update(variables)

    machine = resources["BlockStateMachine"]["Properties"]
    definition = substitute_asl(
        (ROOT / machine["DefinitionUri"]).read_text(),
        {k: str(v) for k, v in resolve(machine["DefinitionSubstitutions"], refs).items()},
    )
    name = resolve(machine["Name"], refs)
    refs["BlockStateMachine.Name"] = name
    created = sfn.create_state_machine(name=name, definition=definition, roleArn=role, type="STANDARD")
    assert created["stateMachineArn"] == state_machine_arn == env["STATE_MACHINE_ARN"]

    for key, value in env.items():
        setenv(key, value)
    wiring.reset()
    stack = Stack(
        nacl_ids, table_name, state_machine_arn, env, int(params["RuleNumberStart"]), int(params["RuleLimit"]), refs
    )
    stack.members = member_accounts
    stack.waf_sets = waf_sets
    stack.baseline = {nacl_id: stack.foreign(nacl_id) for nacl_id in [*nacl_ids, *stack.member_refs]}
    assert all(len(rules) >= len(foreign_rules) for rules in stack.baseline.values())
    DEPLOYED.append(stack)
    return stack
