"""Which addresses a GuardDuty finding asks us to deny, in which direction, and why (pure).

``extract(event, policy)`` reads one EventBridge "GuardDuty Finding" event and answers with the
targets (normalised CIDR, direction, reason), the addresses it deliberately leaves alone (with the
reason), or why the whole event is ignored. It never calls AWS.

Whole events
    * ``source`` other than ``aws.guardduty`` or ``detail-type`` other than ``GuardDuty Finding``:
      ignored (EventBridge rules can be broader than the function).
    * ``service.archived`` true: ignored ("archived finding").
    * Attack sequences (Extended Threat Detection: type ``AttackSequence:…``, e.g.
      ``AttackSequence:EC2/CompromisedInstanceGroup``, ``AttackSequence:IAM/CompromisedCredentials``;
      or any finding with ``service.detection.sequence``): ignored, never blocked automatically. A
      sequence bundles many signals and up to 400 network endpoints (an ``ip``, a ``domain`` or
      both), among them the cloud services and ordinary hosts the compromised resource talked to.
      The reason says how many endpoints and how many blockable public addresses there are, and
      names ``autoblock block --from-finding FILE``, with which a person reviews and blocks them.
    * A Runtime Monitoring finding without an action (process activity such as
      ``Execution:Runtime/NewBinaryExecuted``): skipped, it names no address.
    * A finding that does not match the documented shape (no ``service``, no ``service.action``,
      no ``actionType``, a field of the wrong type): ``MalformedFinding`` (400), naming the fields.

Resources
    The direction rules below are the same whatever the affected resource: an EC2 instance
    (``Instance``), a Lambda function (``Lambda``, Lambda Protection: ``Backdoor:Lambda/C&CActivity.B``,
    ``CryptoCurrency:Lambda/BitcoinTool.B``, ``Trojan:Lambda/…``,
    ``UnauthorizedAccess:Lambda/MaliciousIPCaller.Custom``, ``UnauthorizedAccess:Lambda/TorClient``,
    all OUTBOUND connections, so **egress**), or an instance, EKS or ECS workload watched by Runtime
    Monitoring (``Backdoor:Runtime/C&CActivity.B``, ``CryptoCurrency:Runtime/BitcoinTool.B``,
    ``Trojan:Runtime/…``, ``UnauthorizedAccess:Runtime/TorClient``). A Runtime finding's ``!DNS``
    variant (``Backdoor:Runtime/C&CActivity.B!DNS``) is a DNS_REQUEST: it names a domain and is
    skipped like the EC2 one. The NACLs autoblock manages see a Lambda function's own traffic only
    when it runs in a VPC (``lambdaDetails.vpcConfig``) whose subnets they guard; for a function
    outside any VPC the deny still keeps the VPC's resources away from that host.

Actions (``service.action.actionType``)
    * NETWORK_CONNECTION, ``connectionDirection`` INBOUND: the remote connected to us, it is the
      attacker: **ingress** deny.
    * NETWORK_CONNECTION, OUTBOUND: our resource connected out, so the finding type decides who the
      remote is. Finding types read ``ThreatPurpose:ResourceType/ThreatFamilyName.Mechanism!Artifact``:

      1. Our resource is the attacker and the remote its victim (threat families
         ``DenialOfService``, ``Spambot``, ``Portscan``, ``PortSweep``, ``MassIPScan``,
         ``SSHBruteForce``, ``RDPBruteForce``, ``WinRMBruteForce``, e.g.
         ``Backdoor:EC2/DenialOfService.Tcp``, ``Recon:EC2/Portscan``, ``Impact:EC2/PortSweep``,
         ``UnauthorizedAccess:EC2/SSHBruteForce`` with OUTBOUND): **skipped**. Denying a victim
         does not stop the attack; isolating the instance does.
      2. The destination is malicious (threat purposes ``Backdoor``, ``CryptoCurrency`` and
         ``Trojan`` outside rule 1: ``Backdoor:EC2/C&CActivity.B``, ``CryptoCurrency:EC2/BitcoinTool.B``,
         ``Trojan:EC2/BlackholeTraffic``, ``Trojan:EC2/DropPoint``; and the families
         ``MaliciousIPCaller`` (``UnauthorizedAccess:EC2/MaliciousIPCaller.Custom``: your own threat
         list), ``TorClient`` (a Tor guard or authority node), ``MaliciousDomainRequest`` and
         ``BitcoinDomainRequest`` (``Impact:…``) should one come with a connection): **egress** deny.
         Rules 1 and 2 look at the family and purpose only, so the ``Runtime``, ``Lambda`` and
         ``ECS`` variants of these types are treated like the ``EC2`` ones.
      3. Anything else (``Behavior:EC2/NetworkPortUnusual``, ``Behavior:EC2/TrafficVolumeUnusual``,
         ``DefenseEvasion:EC2/UnusualDoHActivity``, ``UnauthorizedAccess:EC2/TorRelay``, types we do
         not know): **skipped**, GuardDuty does not say the destination is malicious.

      Any other direction (GuardDuty also reports UNKNOWN) is skipped: we cannot tell attacker
      from victim.
    * PORT_PROBE: every ``portProbeDetails[]`` entry's remote probed us: **ingress**; repeated
      addresses collapse into one target.
    * RDS_LOGIN_ATTEMPT: the ``rdsLoginAttemptAction.remoteIpDetails`` address tried to log in to
      the database: **ingress**.
    * AWS_API_CALL and KUBERNETES_API_CALL: skipped. The call went to a public AWS or EKS API
      endpoint, which is not in the VPC, so a network ACL never sees that traffic.
    * DNS_REQUEST: skipped, the finding names a domain, not an address.
    * Any other action type: skipped, naming it.

Addresses
    * Both ``ipAddressV4`` and ``ipAddressV6`` are used when present.
    * An address of the affected resource is never a target, whichever field it appears in: any
      of an instance's network interfaces' private, secondary private, public or IPv6 addresses,
      and our end of the activity (``localIpDetails``), which is where a Lambda function's or a
      container's own address appears.
    * Every other address goes through ``addresses.blockable`` with the deployment's policy, the
      same gate as the API; a never-blockable or malformed address is skipped with its message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Literal

from pydantic import ValidationError

from autoblock.errors import AutoblockError, InvalidAddress, PolicyViolation
from autoblock.findings import Action, Finding, FindingEvent, LocalIpDetails, RemoteIpDetails, Resource
from autoblock.logic.addresses import Policy, blockable

type TargetDirection = Literal["ingress", "egress"]

SOURCE = "aws.guardduty"
DETAIL_TYPE = "GuardDuty Finding"

# Threat families in which the affected resource is the one attacking: the remote is a victim.
ATTACKER_FAMILIES = frozenset(
    {
        "DenialOfService",
        "Spambot",
        "Portscan",
        "PortSweep",
        "MassIPScan",
        "SSHBruteForce",
        "RDPBruteForce",
        "WinRMBruteForce",
    }
)
# Threat purposes whose outbound findings name a malicious destination (after ATTACKER_FAMILIES).
MALICIOUS_DESTINATION_PURPOSES = frozenset({"Backdoor", "CryptoCurrency", "Trojan"})
# Threat families of other purposes whose outbound findings name a malicious destination.
MALICIOUS_DESTINATION_FAMILIES = frozenset(
    {"MaliciousIPCaller", "TorClient", "MaliciousDomainRequest", "BitcoinDomainRequest"}
)

# ``resource.resourceType`` → ``Extraction.resource_kind``; any other type gives "".
RESOURCE_KINDS = {
    "Instance": "instance",
    "Lambda": "lambda",
    "ECSCluster": "ecs",
    "EKSCluster": "eks",
    "Container": "container",
}
ATTACK_SEQUENCE_PREFIX = "AttackSequence:"
CLI_HINT = "autoblock block --from-finding FILE"

# GuardDuty's severity bands (value ranges from the user guide); Critical counts as High here.
MEDIUM_FROM = 4.0
HIGH_FROM = 7.0

_MAX_PROBLEMS = 5


class MalformedFinding(AutoblockError):
    """A GuardDuty finding event that does not match the documented finding format."""

    http_status = 400
    code = "malformed_finding"


@dataclass(frozen=True)
class Target:
    """An address to deny: the normalised CIDR (``203.0.113.7/32``, ``2001:db8::7/128``)."""

    address: str
    direction: TargetDirection
    reason: str


@dataclass(frozen=True)
class Skip:
    """An address (as the finding spells it; None when there is none) deliberately left alone."""

    address: str | None
    reason: str


@dataclass(frozen=True)
class Extraction:
    """What one event asks for. ``ignored`` set: the whole event is not acted on.

    The finding fields are empty for an event that is not a GuardDuty finding at all. ``count`` is
    ``service.count``, or 1 when GuardDuty leaves it out (the finding exists, so it happened once).
    ``account_id`` and ``region`` are the finding's own (``detail.accountId``, ``detail.region``);
    ``subnet_ids`` are the affected resource's subnets (its network interfaces', or a Lambda
    function's ``vpcConfig``), empty when the finding names none; ``resource_kind`` is one of
    ``RESOURCE_KINDS``' values, or "".
    """

    finding_id: str = ""
    finding_type: str = ""
    severity: float = 0.0
    updated_at: str = ""
    count: int = 0
    account_id: str = ""
    region: str = ""
    subnet_ids: tuple[str, ...] = ()
    resource_kind: str = ""
    targets: list[Target] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    ignored: str | None = None


def extract(event: Mapping[str, Any], policy: Policy) -> Extraction:
    """The targets and skips of one EventBridge event, or why it is ignored; raise MalformedFinding."""
    if not isinstance(event, Mapping):
        raise MalformedFinding("malformed GuardDuty finding: the event is not a JSON object")
    source, detail_type = event.get("source"), event.get("detail-type")
    if source != SOURCE:
        return Extraction(ignored=f"not a GuardDuty event (source {_shown(source)!r})")
    if detail_type != DETAIL_TYPE:
        return Extraction(ignored=f"not a GuardDuty finding (detail-type {_shown(detail_type)!r})")
    finding = parse(event)

    resource = finding.resource
    known = Extraction(
        finding_id=finding.id,
        finding_type=finding.type,
        severity=finding.severity,
        updated_at=finding.updated_at,
        count=finding.service.count if finding.service.count is not None else 1,
        account_id=finding.account_id,
        region=finding.region,
        subnet_ids=_subnet_ids(resource),
        resource_kind=RESOURCE_KINDS.get(resource.resource_type or "", ""),
    )
    if finding.service.archived:
        return replace(known, ignored="archived finding")
    if is_attack_sequence(finding):
        sequence = finding.service.detection.sequence if finding.service.detection else None
        endpoints = len(sequence.endpoints) if sequence else 0
        public = len({t.address for t in sequence_targets(finding, policy)[0]})
        return replace(
            known,
            ignored=(
                f"attack sequence {_shown(finding.type)} names {_plural(endpoints, 'network endpoint')}, "
                f"{_plural(public, 'public address', 'public addresses')} among them: not blocked automatically, "
                f"a sequence bundles many signals; review it, then `{CLI_HINT}`"
            ),
        )
    action = finding.service.action
    if action is None and _is_runtime(finding):
        why = f"{_shown(finding.type)}: a Runtime Monitoring finding about process activity names no address"
        return replace(known, skipped=[Skip(None, why)])
    if action is None:
        raise MalformedFinding(f"malformed GuardDuty finding {_shown(finding.id)}: detail.service.action is missing")

    wanted, skipped = _plan(finding, action)
    own = _OwnAddresses(finding.resource, action)
    targets: dict[tuple[str, TargetDirection], Target] = {}
    for text, direction, reason in wanted:
        if own.contains(text):
            skipped.append(Skip(text, f"{_shown(text)} is an address of the affected {own.name}; never blocked"))
            continue
        try:
            network = blockable(text, policy)
        except (InvalidAddress, PolicyViolation) as exc:
            skipped.append(Skip(text, str(exc)))
            continue
        targets.setdefault((network.compressed, direction), Target(network.compressed, direction, reason))
    return replace(known, targets=list(targets.values()), skipped=list(dict.fromkeys(skipped)))


def parse(event: Mapping[str, Any]) -> Finding:
    """The finding of an EventBridge "GuardDuty Finding" event; raise MalformedFinding."""
    try:
        return FindingEvent.model_validate(event).detail
    except ValidationError as exc:
        raise _malformed(exc) from None


def is_attack_sequence(finding: Finding) -> bool:
    """An Extended Threat Detection attack sequence (``AttackSequence:…``, or a finding with a sequence)."""
    detection = finding.service.detection
    return finding.type.startswith(ATTACK_SEQUENCE_PREFIX) or (detection is not None and detection.sequence is not None)


def sequence_targets(finding: Finding, policy: Policy) -> tuple[list[Target], list[Skip]]:
    """Every address of an attack sequence's endpoints that passes ``blockable``, and the endpoints left
    alone (a never-blockable address, or a domain without an address). Never acted on automatically:
    this is what ``autoblock block --from-finding`` offers a person. An endpoint's ``connection.direction``
    gives the direction (INBOUND: ingress, OUTBOUND: egress); without one, both."""
    detection = finding.service.detection
    endpoints = detection.sequence.endpoints if detection and detection.sequence else []
    reason = f"GuardDuty {finding.type}: network endpoint of the attack sequence"
    targets: dict[tuple[str, TargetDirection], Target] = {}
    skipped: list[Skip] = []
    for endpoint in endpoints:
        if not endpoint.ip:
            domain = _shown(endpoint.domain, 253) if endpoint.domain else "nor a domain"
            skipped.append(Skip(None, f"endpoint without an address ({domain})"))
            continue
        try:
            address = blockable(endpoint.ip, policy).compressed
        except (InvalidAddress, PolicyViolation) as exc:
            skipped.append(Skip(endpoint.ip, str(exc)))
            continue
        way = endpoint.connection.direction if endpoint.connection else None
        directions: tuple[TargetDirection, ...] = (
            ("ingress",) if way == "INBOUND" else ("egress",) if way == "OUTBOUND" else ("ingress", "egress")
        )
        for direction in directions:
            targets.setdefault((address, direction), Target(address, direction, reason))
    return list(targets.values()), list(dict.fromkeys(skipped))


def duration_for(severity: float, low: int, medium: int, high: int) -> int:
    """The block duration for a finding's severity, by GuardDuty's bands.

    Low is 1.0-3.9, Medium 4.0-6.9, High 7.0-8.9 and Critical 9.0-10.0; Critical gets the High
    duration. Values between two bands (6.95) belong to the lower one; below 1.0 counts as Low.
    """
    if severity >= HIGH_FROM:
        return high
    if severity >= MEDIUM_FROM:
        return medium
    return low


# --- per action --------------------------------------------------------------------------------

type Wanted = tuple[str, TargetDirection, str]


def _plan(finding: Finding, action: Action) -> tuple[list[Wanted], list[Skip]]:
    """What the action asks for, before the own-address and policy checks."""
    kind, ftype = action.action_type, finding.type
    if kind is None:
        raise MalformedFinding(
            f"malformed GuardDuty finding {_shown(finding.id)}: detail.service.action.actionType is missing"
        )

    if kind == "NETWORK_CONNECTION":
        connection = _required(finding, kind, action.network_connection_action, "networkConnectionAction")
        remotes = _remotes([connection.remote_ip_details])
        if not remotes:
            return [], [Skip(None, "the network connection names no remote address")]
        direction = connection.connection_direction
        if direction == "INBOUND":
            reason = f"GuardDuty {ftype}: inbound connection from the attacker"
            return [(a, "ingress", reason) for a in remotes], []
        if direction == "OUTBOUND":
            role = outbound_role(ftype)
            if role == "malicious-destination":
                reason = f"GuardDuty {ftype}: outbound connection to a malicious host"
                return [(a, "egress", reason) for a in remotes], []
            if role == "victim":
                why = (
                    f"outbound {ftype}: the affected resource is the attacker and this address its victim; "
                    "denying it would not stop the attack"
                )
            else:
                why = f"outbound {ftype}: GuardDuty does not say this destination is malicious"
            return [], [Skip(a, why) for a in remotes]
        shown = _shown(direction) if direction else "missing"
        why = f"connection direction {shown}: cannot tell the attacker from the victim"
        return [], [Skip(a, why) for a in remotes]

    if kind == "PORT_PROBE":
        probe = _required(finding, kind, action.port_probe_action, "portProbeAction")
        remotes = _remotes(d.remote_ip_details for d in probe.port_probe_details)
        if not remotes:
            return [], [Skip(None, "the port probe names no remote address")]
        reason = f"GuardDuty {ftype}: port probe from the attacker"
        return [(a, "ingress", reason) for a in remotes], []

    if kind == "RDS_LOGIN_ATTEMPT":
        login = _required(finding, kind, action.rds_login_attempt_action, "rdsLoginAttemptAction")
        remotes = _remotes([login.remote_ip_details])
        if not remotes:
            return [], [Skip(None, "the database login attempt names no remote address")]
        reason = f"GuardDuty {ftype}: database login attempt from the attacker"
        return [(a, "ingress", reason) for a in remotes], []

    if kind == "AWS_API_CALL":
        call = _required(finding, kind, action.aws_api_call_action, "awsApiCallAction")
        why = "AWS API call: a VPC network ACL never sees traffic to a public AWS endpoint"
        return [], [Skip(a, why) for a in _remotes([call.remote_ip_details])] or [Skip(None, why)]

    if kind == "KUBERNETES_API_CALL":
        k8s = _required(finding, kind, action.kubernetes_api_call_action, "kubernetesApiCallAction")
        why = "Kubernetes API call: a VPC network ACL never sees traffic to a public Kubernetes API endpoint"
        return [], [Skip(a, why) for a in _remotes([k8s.remote_ip_details])] or [Skip(None, why)]

    if kind == "DNS_REQUEST":
        dns = _required(finding, kind, action.dns_request_action, "dnsRequestAction")
        domain = _shown(dns.domain, 253) if dns.domain else "a domain"
        return [], [Skip(None, f"DNS request for {domain}: the finding names a domain, not an address")]

    return [], [Skip(None, f"action type {_shown(kind)} is not one autoblock acts on")]


type OutboundRole = Literal["victim", "malicious-destination", "unknown"]


def outbound_role(finding_type: str) -> OutboundRole:
    """Who the remote of an OUTBOUND connection is, by the finding type (see the module docstring)."""
    purpose, _, rest = finding_type.partition(":")
    family = re.split(r"[.!]", rest.partition("/")[2], maxsplit=1)[0]
    if family in ATTACKER_FAMILIES:
        return "victim"
    if purpose in MALICIOUS_DESTINATION_PURPOSES or family in MALICIOUS_DESTINATION_FAMILIES:
        return "malicious-destination"
    return "unknown"


# --- helpers -----------------------------------------------------------------------------------


def _required[T](finding: Finding, kind: str, value: T | None, name: str) -> T:
    if value is None:
        raise MalformedFinding(
            f"malformed GuardDuty finding {_shown(finding.id)}: actionType {kind} without detail.service.action.{name}"
        )
    return value


def _remotes(details: Iterable[RemoteIpDetails | None]) -> list[str]:
    """Every IPv4 and IPv6 remote address, in order, each once."""
    found = (a for d in details if d is not None for a in (d.ip_address_v4, d.ip_address_v6) if a)
    return list(dict.fromkeys(found))


class _OwnAddresses:
    """The affected resource's addresses, compared as addresses (so ``2001:DB8::1`` matches): an
    instance's network interfaces, and our end of the activity (``localIpDetails``), which is the
    only place a Lambda function's or a container's address appears."""

    def __init__(self, resource: Resource, action: Action) -> None:
        instance, function = resource.instance_details, resource.lambda_details
        interfaces = instance.network_interfaces if instance else []
        if instance and instance.instance_id:
            self.name = f"instance {_shown(instance.instance_id)}"
        elif function and function.function_name:
            self.name = f"Lambda function {_shown(function.function_name)}"
        else:
            self.name = "resource"
        local = [action.network_connection_action.local_ip_details] if action.network_connection_action else []
        if action.port_probe_action:
            local += [d.local_ip_details for d in action.port_probe_action.port_probe_details]
        self.raw = {a for i in interfaces for a in i.addresses()} | set(_locals(local))
        self.parsed = {p for a in self.raw if (p := _parsed(a)) is not None}

    def contains(self, text: str) -> bool:
        if text in self.raw:
            return True
        parsed = _parsed(text)
        if parsed is None:
            return False
        mapped = parsed.ipv4_mapped if isinstance(parsed, IPv6Address) else None
        return parsed in self.parsed or (mapped is not None and mapped in self.parsed)


def _locals(details: Iterable[LocalIpDetails | None]) -> list[str]:
    return [a for d in details if d is not None for a in (d.ip_address_v4, d.ip_address_v6) if a]


def _subnet_ids(resource: Resource) -> tuple[str, ...]:
    """The affected resource's subnets, each once, in the finding's order."""
    instance, function = resource.instance_details, resource.lambda_details
    found = [i.subnet_id for i in instance.network_interfaces if i.subnet_id] if instance else []
    if function and function.vpc_config:
        found += function.vpc_config.subnet_ids
    return tuple(dict.fromkeys(found))


def _is_runtime(finding: Finding) -> bool:
    service = finding.service
    return service.runtime_details is not None or service.feature_name == "RuntimeMonitoring"


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _parsed(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(text)
    except ValueError:
        return None


def _shown(value: object, limit: int = 100) -> str:
    """A value from the event, short and printable, for a message."""
    return str(value)[:limit].encode("unicode_escape").decode("ascii")


def _malformed(exc: ValidationError) -> MalformedFinding:
    problems = [
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    ]
    more = f" (and {len(problems) - _MAX_PROBLEMS} more)" if len(problems) > _MAX_PROBLEMS else ""
    return MalformedFinding(f"malformed GuardDuty finding: {'; '.join(problems[:_MAX_PROBLEMS])}{more}")
