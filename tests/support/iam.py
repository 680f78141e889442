"""IAM, proven by the tests: every AWS call a function, the state machine or a rule makes on the
emulated stack is evaluated against that principal's own policy, as CloudFormation creates it from
template.yaml (aws-sam-translator expands the SAM policy templates and event roles), with the
intrinsic functions resolved against the emulated stack's real names and ARNs.

* ``policies`` reads the roles and their statements from the transformed template;
  ``evaluate`` decides a request (explicit Deny, then Allow; Action/NotAction, Resource/NotResource
  wildcards, the Condition operators below); ``requests`` maps an API call to its IAM action(s) and
  resource ARN(s), and refuses an operation it does not know, so no new call slips past.
* ``Recorder.observe`` attributes each call to a principal (``attribute``): credentials an
  ``sts:AssumeRole`` returned act as that role; the state machine's interpreter signs with its own
  key; a handler of the template on the calling thread's stack is that function; ``acting_as``
  names a rule. Calls of test setup and assertions are attributed to no one and not evaluated.
* The pytest side (tests/support/iam_plugin.py) fails a test whose calls were not allowed, and writes
  the statement → first test report.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from autoblock_local.emulator import ACCOUNT, ROOT, load_template, resolve

MEMBER_ROLE_TEMPLATE = ROOT / "member-role.yaml"
MEMBER_ROLE = "MemberRole"  # its logical id in member-role.yaml

# -- statements and their evaluation ----------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    role: str  # the role's logical id (ApiFunctionRole, ..., MemberRole)
    policy: str  # the inline policy's name, or the managed policy's logical id
    index: int  # its position in the policy
    sid: str
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    condition: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.role}/{self.policy}/{self.index}"

    def describe(self) -> str:
        what = ", ".join(self.actions or [f"NotAction {a}" for a in self.not_actions])
        sid = f" (Sid {self.sid})" if self.sid else ""
        return f"{self.role} ← {self.policy} #{self.index}{sid}: {self.effect} {what}"

    @classmethod
    def of(cls, role: str, policy: str, index: int, raw: Mapping[str, Any]) -> Statement:
        return cls(
            role=role,
            policy=policy,
            index=index,
            sid=str(raw.get("Sid", "")),
            effect=str(raw["Effect"]),
            actions=_strings(raw.get("Action")),
            not_actions=_strings(raw.get("NotAction")),
            resources=_strings(raw.get("Resource")),
            not_resources=_strings(raw.get("NotResource")),
            condition=dict(raw.get("Condition", {})),
        )


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(str(v) for v in (value if isinstance(value, list) else [value]))


@cache
def _pattern(wildcard: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in wildcard)
    return re.compile(f"^{regex}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def like(wildcard: str, value: str, ignore_case: bool = False) -> bool:
    return bool(_pattern(wildcard, ignore_case).match(value))


def _string_equals(expected: str, actual: str) -> bool:
    return expected == actual


def _string_like(expected: str, actual: str) -> bool:
    return like(expected, actual)


def _bool(expected: str, actual: str) -> bool:
    return expected.lower() == actual.lower()


_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": _string_equals,
    "StringLike": _string_like,
    "ArnEquals": _string_like,  # ARN operators take wildcards in each segment; ARNs here have no odd segments
    "ArnLike": _string_like,
    "Bool": _bool,
}


class UnknownCondition(ValueError):
    """A Condition operator the evaluator does not implement: refused, not guessed."""


def condition_holds(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    """Every operator and every key must hold (AND); any of a key's values may match (OR). A key
    missing from the request's context fails a positive operator and passes a negated one."""
    for operator, tests in condition.items():
        negated = operator.startswith(("StringNot", "ArnNot"))
        base = operator.replace("Not", "", 1) if negated else operator
        if base not in _OPERATORS:
            raise UnknownCondition(f"the IAM evaluator does not implement the Condition operator {operator}")
        for key, expected in tests.items():
            actual = context.get(key)
            if actual is None:
                if not negated:
                    return False
                continue
            matched = any(_OPERATORS[base](str(e), actual) for e in _strings(expected))
            if matched == negated:
                return False
    return True


def _applies(statement: Statement, action: str, resource: str, context: Mapping[str, str]) -> bool:
    if statement.actions and not any(like(a, action, ignore_case=True) for a in statement.actions):
        return False
    if statement.not_actions and any(like(a, action, ignore_case=True) for a in statement.not_actions):
        return False
    if statement.resources and not any(like(r, resource) for r in statement.resources):
        return False
    if statement.not_resources and any(like(r, resource) for r in statement.not_resources):
        return False
    return condition_holds(statement.condition, context)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    allowing: tuple[Statement, ...] = ()  # every Allow statement that matched
    denying: Statement | None = None  # the explicit Deny that matched, if any
    near: tuple[Statement, ...] = ()  # Allow statements naming the action whose resource or condition did not match


def evaluate(statements: Iterable[Statement], action: str, resource: str, context: Mapping[str, str]) -> Decision:
    """An explicit Deny wins, then any Allow; nothing matching is an implicit deny."""
    statements = list(statements)
    for statement in statements:
        if statement.effect == "Deny" and _applies(statement, action, resource, context):
            return Decision(False, denying=statement)
    allowing = tuple(s for s in statements if s.effect == "Allow" and _applies(s, action, resource, context))
    if allowing:
        return Decision(True, allowing)
    near = tuple(
        s
        for s in statements
        if s.effect == "Allow" and (any(like(a, action, ignore_case=True) for a in s.actions) or s.not_actions)
    )
    return Decision(False, near=near)


# -- the template's roles, as CloudFormation creates them ------------------------------------------


@dataclass(frozen=True)
class Role:
    name: str  # logical id in the transformed template
    source: str  # the resource of template.yaml that brings it (the function, the state machine)
    policies: tuple[tuple[str, str, list[Any]], ...]  # (policy name, defining resource, raw statements)
    aws_managed: tuple[str, ...]  # AWS managed policy ARNs: not in the template, not evaluated


def _placeholders(template: dict[str, Any]) -> dict[str, Any]:
    """The template as ``sam deploy`` hands it to CloudFormation: code and definition in S3."""
    template = copy.deepcopy(template)
    template.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://placeholder/functions.zip"
        if "DefinitionUri" in props:
            props["DefinitionUri"] = "s3://placeholder/definition.asl.json"
    return template


@cache
def transformed() -> dict[str, Any]:
    """template.yaml after the SAM transform (the region is the emulator's)."""
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name="us-east-1"))
    result: dict[str, Any] = translator.translate(_placeholders(load_template()), {}, get_managed_policy_map=dict)
    return result


def _source(role: str) -> str:
    original = load_template()["Resources"]
    candidates = [name for name in original if role.startswith(name)]
    return max(candidates, key=len) if candidates else role


@cache
def roles() -> dict[str, Role]:
    """Every IAM role of the stack, with its inline and customer managed policies (raw statements)."""
    template = transformed()
    resources = template["Resources"]
    found: dict[str, Role] = {}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        props = resource["Properties"]
        policies: list[tuple[str, str, list[Any]]] = [_inline(p, name) for p in props.get("Policies", [])]
        aws_managed: list[str] = []
        for arn in props.get("ManagedPolicyArns", []):
            if (
                isinstance(arn, dict)
                and set(arn) == {"Ref"}
                and resources[arn["Ref"]]["Type"] == "AWS::IAM::ManagedPolicy"
            ):
                document = resources[arn["Ref"]]["Properties"]["PolicyDocument"]
                policies.append((arn["Ref"], arn["Ref"], _statement_list(document)))
            elif isinstance(arn, str):
                aws_managed.append(arn)
            else:
                raise ValueError(f"{name}: a managed policy the evaluator cannot read: {arn}")
        found[name] = Role(name, _source(name), tuple(policies), tuple(aws_managed))
    member = member_role()
    if member is not None:
        found[member.name] = member
    return found


def _inline(policy: Mapping[str, Any], role: str) -> tuple[str, str, list[Any]]:
    """An inline policy; one under a template Condition (``Fn::If`` with ``AWS::NoValue``, as SAM
    writes a function's conditional policy) carries the condition on each of its statements."""
    condition, inner = _conditional(policy)
    raw = _statement_list(inner["PolicyDocument"])
    if condition is not None:
        raw = [{"Fn::If": [condition, statement, {"Ref": "AWS::NoValue"}]} for statement in raw]
    return (str(inner["PolicyName"]), role, raw)


def _conditional(node: Any) -> tuple[str | None, Any]:
    """(condition, what it guards) of ``{"Fn::If": [condition, x, {"Ref": "AWS::NoValue"}]}``; else (None, node)."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        condition, yes, no = node["Fn::If"]
        if no != {"Ref": "AWS::NoValue"}:
            raise ValueError(f"a conditional policy or statement the evaluator cannot read: {node}")
        return str(condition), yes
    return None, node


def _statement_list(document: Mapping[str, Any]) -> list[Any]:
    statements = document["Statement"]
    return list(statements) if isinstance(statements, list) else [statements]


def member_role() -> Role | None:
    """The member accounts' role (member-role.yaml), when the checkout has one."""
    if not MEMBER_ROLE_TEMPLATE.exists():
        return None
    from cfnlint.decode import decode

    template, matches = decode(str(MEMBER_ROLE_TEMPLATE))
    assert not matches, matches
    props = template["Resources"][MEMBER_ROLE]["Properties"]
    policies = tuple(_inline(p, MEMBER_ROLE) for p in props.get("Policies", []))
    return Role(MEMBER_ROLE, MEMBER_ROLE, policies, tuple(str(a) for a in props.get("ManagedPolicyArns", [])))


def statements(role: Role, refs: Mapping[str, Any]) -> list[Statement]:
    """The role's statements with every intrinsic function resolved against ``refs``."""
    resolved = []
    for policy, _, raw in role.policies:
        for index, statement in enumerate(raw):
            condition, inner = _conditional(statement)
            if condition is not None and not refs.get(f"Condition:{condition}", False):
                continue  # not in this stack (its template Condition is false)
            resolved.append(Statement.of(role.name, policy, index, _flatten(resolve(inner, dict(refs)))))
    return resolved


def _flatten(statement: dict[str, Any]) -> dict[str, Any]:
    """A Resource list whose items resolved to lists (Fn::Split) is one list, as CloudFormation sends it."""
    for key in ("Resource", "NotResource", "Action"):
        value = statement.get(key)
        if isinstance(value, list):
            statement[key] = [v for item in value for v in (item if isinstance(item, list) else [item])]
    return statement


def principals() -> dict[str, str]:
    """Who acts → the role it acts with: each function and state machine (its Role), each rule (its
    targets' RoleArn), by logical id in the transformed template."""
    found: dict[str, str] = {}
    for name, resource in transformed()["Resources"].items():
        props = resource.get("Properties", {})
        role = props.get("Role") or props.get("RoleArn")
        if resource["Type"] == "AWS::Events::Rule":
            target_roles = {str(t["RoleArn"]["Fn::GetAtt"][0]) for t in props.get("Targets", []) if "RoleArn" in t}
            if target_roles:
                (found[name],) = target_roles
        elif isinstance(role, dict) and "Fn::GetAtt" in role:
            found[name] = str(role["Fn::GetAtt"][0])
    return found


def justifications() -> dict[str, dict[str, str]]:
    """Resource → Sid → why the statement is granted though no test's call uses it, from the
    resource's ``Metadata.iam.unexercised`` in template.yaml (and member-role.yaml). A role's
    statements are justified on the resource that brings the role (its function or state machine)."""
    found: dict[str, dict[str, str]] = {}
    templates = [load_template()]
    if MEMBER_ROLE_TEMPLATE.exists():
        from cfnlint.decode import decode

        templates.append(dict(decode(str(MEMBER_ROLE_TEMPLATE))[0]))
    for template in templates:
        for name, resource in template["Resources"].items():
            for entry in resource.get("Metadata", {}).get("iam", {}).get("unexercised", []):
                found.setdefault(name, {})[str(entry["sid"])] = str(entry["comment"])
    return found


# -- API calls as IAM requests ---------------------------------------------------------------------


class UnmappedCall(ValueError):
    """An API operation the evaluator does not know: it must be added to ``requests``, not skipped."""


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)


def requests(
    service: str,
    operation: str,
    params: Mapping[str, Any],
    region: str,
    account: str,
    tags: Callable[[str, str, str], Mapping[str, str]] = lambda *_: {},
) -> list[Request]:
    """The IAM requests AWS makes of one API call (``service`` is botocore's service id without
    spaces). ``tags(resource id, account, region)`` gives a resource's tags for ``aws:ResourceTag``."""
    partition = "aws"

    def table(name: str, index: str | None = None) -> str:
        arn = name if name.startswith("arn:") else f"arn:{partition}:dynamodb:{region}:{account}:table/{name}"
        return f"{arn}/index/{index}" if index else arn

    if service == "DynamoDB":
        single = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "DescribeTable"}
        if operation in single:
            return [Request(f"dynamodb:{operation}", table(params["TableName"], params.get("IndexName")))]
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [Request(f"dynamodb:{operation}", table(name)) for name in params["RequestItems"]]
        if operation in ("TransactWriteItems", "TransactGetItems"):
            actions = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}
            actions |= {"ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
            found = []
            for item in params["TransactItems"]:
                ((kind, body),) = item.items()
                found.append(Request(f"dynamodb:{actions[kind]}", table(body["TableName"])))
            return found
    if service == "EC2":
        if operation == "DescribeNetworkAcls":
            return [Request("ec2:DescribeNetworkAcls", "*")]
        if operation in ("CreateNetworkAclEntry", "ReplaceNetworkAclEntry", "DeleteNetworkAclEntry"):
            nacl = str(params["NetworkAclId"])
            context = {f"aws:ResourceTag/{k}": v for k, v in tags(nacl, account, region).items()}
            return [Request(f"ec2:{operation}", f"arn:{partition}:ec2:{region}:{account}:network-acl/{nacl}", context)]
    if service == "SFN":
        if operation in ("StartExecution", "DescribeStateMachine", "ListExecutions"):
            return [Request(f"states:{operation}", str(params["stateMachineArn"]))]
        if operation in ("StopExecution", "DescribeExecution", "GetExecutionHistory"):
            return [Request(f"states:{operation}", str(params["executionArn"]))]
    if service == "SecretsManager" and operation in ("GetSecretValue", "DescribeSecret"):
        secret = str(params["SecretId"])
        if not secret.startswith("arn:"):
            raise UnmappedCall(f"SecretsManager.{operation} by name ({secret}): the evaluator needs the secret's ARN")
        return [Request(f"secretsmanager:{operation}", secret)]
    if service == "Lambda" and operation == "Invoke":
        function = str(params["FunctionName"])
        arn = (
            function
            if function.startswith("arn:")
            else f"arn:{partition}:lambda:{region}:{account}:function:{function}"
        )
        if params.get("Qualifier"):
            arn = f"{arn}:{params['Qualifier']}"
        return [Request("lambda:InvokeFunction", arn)]
    if service == "WAFV2" and operation in ("GetIPSet", "UpdateIPSet"):
        # CLOUDFRONT-scope sets live in us-east-1 under "global", whatever Region the caller names.
        scope = str(params["Scope"])
        where = f"us-east-1:{account}:global" if scope == "CLOUDFRONT" else f"{region}:{account}:regional"
        return [Request(f"wafv2:{operation}", f"arn:{partition}:wafv2:{where}/ipset/{params['Name']}/{params['Id']}")]
    if service == "STS":
        if operation == "AssumeRole":
            return [Request("sts:AssumeRole", str(params["RoleArn"]))]
        if operation == "GetCallerIdentity":
            return []  # needs no permission
    raise UnmappedCall(f"{service}.{operation}: no IAM action known for it (add it to tests/support/iam.py)")


# -- attribution and recording ---------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    service: str  # botocore's service id without spaces: DynamoDB, EC2, SFN, SecretsManager, Lambda, STS
    operation: str
    params: Mapping[str, Any]
    region: str
    access_key: str
    principal: str | None  # who acts: a function, state machine or rule of the template (logical id)

    @property
    def name(self) -> str:
        return f"{self.service}.{self.operation}"


def handler_frames() -> dict[tuple[str, str], str]:
    """(file, function name) of each handler of template.yaml → the function's logical id."""
    found = {}
    for name, resource in load_template()["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        module, _, attr = str(resource["Properties"]["Handler"]).rpartition(".")
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        found[(spec.origin, attr)] = name
    return found


SCAFFOLDING = str(ROOT / "tests") + "/"


def handler_on_stack(frames: Mapping[tuple[str, str], str]) -> str | None:
    """The function whose handler is running on this thread (the innermost, if one calls another).
    A test's own code between it and the call (a fake a test put in the handler's way, which reads
    the table to decide what to do) is scaffolding: that call is the test's, not the function's."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        found = frames.get((code.co_filename, code.co_name))
        if found is not None:
            return found
        if code.co_filename.startswith(SCAFFOLDING) and not code.co_filename.startswith(_OWN):
            return None
        frame = frame.f_back
    return None


_OWN = str(Path(__file__).with_name("iam"))  # this module and its plugin: the recorder's own frames


BETWEEN_TESTS = "(between tests)"


def first(test: str) -> tuple[bool, str]:
    """The order of "first test that used it": by name (so the report is the same with any -n), a
    call made between tests last."""
    return (test == BETWEEN_TESTS, test)


@dataclass
class Violation:
    test: str | None
    message: str


@dataclass
class Recorder:
    """Evaluates every attributed call at the moment it is made; remembers which statements were used
    (and by which test first), and every call that was not allowed."""

    refs: Callable[[], Mapping[str, Any] | None]  # the deployed stack's refs, None when nothing is deployed
    tags: Callable[[str, str, str], Mapping[str, str]] = lambda *_: {}
    roles: Callable[[], Mapping[str, Role]] = roles  # read when the first attributed call is made
    principals: Callable[[], Mapping[str, str]] = principals
    test: str | None = None  # the test running now (set by the pytest plugin)
    used: dict[str, str] = field(default_factory=dict)  # statement key → first test (by name) that used it
    used_actions: dict[str, set[str]] = field(default_factory=dict)  # statement key → actions used through it
    violations: list[Violation] = field(default_factory=list)
    evaluated: int = 0
    assumed: dict[str, str] = field(default_factory=dict)  # access key id → role ARN, from AssumeRole answers
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _resolved: tuple[Mapping[str, Any], dict[str, list[Statement]]] | None = None  # the latest stack's

    def principal_of(self, access_key: str, principal: str | None) -> str | None:
        """Credentials an AssumeRole returned act as that role; otherwise who the caller said."""
        return self.assumed.get(access_key, principal)

    def observe(self, call: Call) -> None:
        """Evaluate one call before it is sent."""
        acting = self.principal_of(call.access_key, call.principal)
        if acting is None:
            return
        if acting != call.principal and call.principal is not None:
            # A function acting through a role it assumed: on AWS each function assumes it itself (here
            # the functions share one process, and the role's credentials), so it must be allowed to.
            self._judge(call, call.principal, [Request("sts:AssumeRole", acting)])
        try:
            found = self._statements(acting, call.region)
            if found is None:
                return
            role, account, own = found
            asked = requests(call.service, call.operation, call.params, call.region, account, self.tags)
        except (UnmappedCall, KeyError, ValueError) as error:
            self._violate(f"{call.name} by {acting}: {type(error).__name__}: {error}")
            return
        self._evaluate(call, acting, role, own, asked)

    def _judge(self, call: Call, principal: str, asked: list[Request]) -> None:
        try:
            found = self._statements(principal, call.region)
        except (KeyError, ValueError) as error:
            self._violate(f"{call.name} by {principal}: {type(error).__name__}: {error}")
            return
        if found is not None:
            self._evaluate(call, principal, found[0], found[2], asked)

    def _evaluate(self, call: Call, acting: str, role: str, own: list[Statement], asked: list[Request]) -> None:
        for request in asked:
            decision = evaluate(own, request.action, request.resource, request.context)
            with self._lock:
                self.evaluated += 1
                for statement in decision.allowing:
                    test = self.test or BETWEEN_TESTS
                    self.used[statement.key] = min(self.used.get(statement.key, test), test, key=first)
                    self.used_actions.setdefault(statement.key, set()).add(request.action)
            if not decision.allowed:
                self._violate(refusal(call, acting, role, request, decision))

    def answered(self, call: Call, response: Mapping[str, Any]) -> None:
        """Remember the credentials an AssumeRole returned, whoever asked for them."""
        if call.name == "STS.AssumeRole":
            key = response.get("Credentials", {}).get("AccessKeyId")
            if key:
                with self._lock:
                    self.assumed[str(key)] = str(call.params["RoleArn"])

    def _statements(self, acting: str, region: str) -> tuple[str, str, list[Statement]] | None:
        """(role, account, statements) of the principal, resolved against the deployed stack."""
        if acting.startswith("arn:"):  # an assumed role: the member role of its account
            account = acting.split(":")[4]
            refs = self.refs()
            member_role_name = str((refs or {}).get("MemberRoleName") or "autoblock-member")
            if acting.rsplit("/", 1)[-1] != member_role_name:
                return None  # another role (the emulator's OrganizationAccountAccessRole): test setup
            member = self.roles().get(MEMBER_ROLE)
            if member is None:
                raise KeyError(f"no policy known for the assumed role {acting} (member-role.yaml is absent)")
            pseudo = {"AWS::AccountId": account, "AWS::Partition": "aws", "AWS::Region": region}
            return MEMBER_ROLE, account, statements(member, pseudo)
        refs = self.refs()
        if refs is None:
            return None  # a handler called with no stack deployed: nothing to evaluate against
        role = self.principals().get(acting)
        if role is None:
            raise KeyError(f"{acting} has no role in the template")
        with self._lock:
            if self._resolved is None or self._resolved[0] is not refs:
                self._resolved = (refs, {})
            cached = self._resolved[1]
            if role not in cached:
                cached[role] = statements(self.roles()[role], refs)
            return role, ACCOUNT, cached[role]

    def _violate(self, message: str) -> None:
        with self._lock:
            self.violations.append(Violation(self.test, message))

    def take(self, test: str | None) -> list[str]:
        """The violations of ``test``, forgotten once taken."""
        with self._lock:
            mine = list(dict.fromkeys(v.message for v in self.violations if v.test == test))  # once each
            self.violations = [v for v in self.violations if v.test != test]
        return mine


def refusal(call: Call, acting: str, role: str, request: Request, decision: Decision) -> str:
    where = f"{call.name} by {acting} (role {role}): {request.action} on {request.resource}"
    if decision.denying is not None:
        return f"{where} is denied explicitly by {decision.denying.describe()}"
    missing = {"Effect": "Allow", "Action": request.action, "Resource": request.resource}
    lines = [f"{where} is not allowed; missing statement: {json.dumps(missing)}"]
    if request.context:
        lines.append(f"  request context: {json.dumps(dict(request.context))}")
    for statement in decision.near:
        lines.append(
            f"  near miss: {statement.describe()} on {list(statement.resources or statement.not_resources)}"
            + (f" if {json.dumps(dict(statement.condition))}" if statement.condition else "")
        )
    return "\n".join(lines)


def catalog() -> list[Statement]:
    """Every statement of every role, unresolved (for the report: the keys and what they grant)."""
    found = []
    for role in roles().values():
        for policy, _, raw in role.policies:
            for index, statement in enumerate(raw):
                inner = _conditional(statement)[1]
                found.append(Statement.of(role.name, policy, index, _flatten(json.loads(json.dumps(inner)))))
    return found
