"""The GuardDuty extractor on the events/ fixtures: what is denied, in which direction, what is left
alone and why, and which events are ignored or refused."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any, cast

import pytest

from autoblock.errors import AutoblockError, error_class
from autoblock.findings import FindingEvent
from autoblock.logic.addresses import Policy, parse_allowlist
from autoblock.logic.guardduty import (
    Extraction,
    MalformedFinding,
    Skip,
    Target,
    duration_for,
    extract,
    outbound_role,
    parse,
    sequence_targets,
)

EVENTS = Path(__file__).resolve().parents[2] / "events"
POLICY = Policy()
INSTANCE = "i-0a1b2c3d4e5f67890"
OWN = f"is an address of the affected instance {INSTANCE}; never blocked"
AWS_API = "AWS API call: a VPC network ACL never sees traffic to a public AWS endpoint"
K8S_API = "Kubernetes API call: a VPC network ACL never sees traffic to a public Kubernetes API endpoint"
DOCUMENTATION = [ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]


def event(name: str) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads((EVENTS / name).read_text()))


def changed(name: str, change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    """The fixture with one change applied (the committed file stays as AWS sends it)."""
    copied = copy.deepcopy(event(name))
    change(copied)
    return copied


def pairs(extraction: Extraction) -> list[tuple[str, str]]:
    return [(t.address, t.direction) for t in extraction.targets]


def skips(extraction: Extraction) -> list[tuple[str | None, str]]:
    return [(s.address, s.reason) for s in extraction.skipped]


def connection(e: dict[str, Any]) -> dict[str, Any]:
    return cast(dict[str, Any], e["detail"]["service"]["action"]["networkConnectionAction"])


# --- one test per fixture ----------------------------------------------------------------------


def test_inbound_ssh_brute_force_denies_the_attacker_inbound() -> None:
    result = extract(event("guardduty_ssh_bruteforce.json"), POLICY)

    assert result.ignored is None
    assert result.targets == [
        Target(
            "203.0.113.7/32",
            "ingress",
            "GuardDuty UnauthorizedAccess:EC2/SSHBruteForce: inbound connection from the attacker",
        )
    ]
    assert result.skipped == []
    assert result.finding_id == "a4c6b0f1e2d34f5a8b9c0d1e2f3a4b5c"
    assert result.finding_type == "UnauthorizedAccess:EC2/SSHBruteForce"
    assert result.severity == 2.0
    assert result.count == 4
    assert result.updated_at == "2026-11-28T13:04:56.118Z"


def test_an_update_of_a_finding_carries_the_same_id_a_higher_count_and_a_later_time() -> None:
    first = extract(event("guardduty_ssh_bruteforce.json"), POLICY)

    update = extract(event("guardduty_ssh_bruteforce_update.json"), POLICY)

    assert update.finding_id == first.finding_id
    assert update.count == 27 > first.count
    assert update.updated_at == "2026-11-28T19:05:02.950Z" > first.updated_at
    assert update.targets == first.targets
    assert update.skipped == []


def test_outbound_command_and_control_traffic_denies_the_server_outbound() -> None:
    result = extract(event("guardduty_c2_activity.json"), POLICY)

    assert result.targets == [
        Target(
            "198.51.100.77/32",
            "egress",
            "GuardDuty Backdoor:EC2/C&CActivity.B: outbound connection to a malicious host",
        )
    ]
    assert result.skipped == []
    assert result.severity == 8.0


def test_outbound_cryptocurrency_traffic_denies_the_pool_outbound() -> None:
    result = extract(event("guardduty_bitcoin_tool.json"), POLICY)

    assert pairs(result) == [("192.0.2.88/32", "egress")]
    assert (
        result.targets[0].reason
        == "GuardDuty CryptoCurrency:EC2/BitcoinTool.B: outbound connection to a malicious host"
    )
    assert result.skipped == []


def test_outbound_brute_force_from_our_instance_leaves_its_victim_alone() -> None:
    result = extract(event("guardduty_ssh_bruteforce_outbound.json"), POLICY)

    assert result.ignored is None
    assert result.targets == []
    assert skips(result) == [
        (
            "192.0.2.44",
            "outbound UnauthorizedAccess:EC2/SSHBruteForce: the affected resource is the attacker and this address "
            "its victim; denying it would not stop the attack",
        )
    ]


def test_a_port_probe_denies_every_prober_once_ipv4_and_ipv6() -> None:
    result = extract(event("guardduty_port_probe_emr.json"), POLICY)

    assert pairs(result) == [
        ("203.0.113.21/32", "ingress"),  # probed twice: one target
        ("192.0.2.33/32", "ingress"),
        ("2001:db8:feed::33/128", "ingress"),
    ]
    assert {t.reason for t in result.targets} == {
        "GuardDuty Recon:EC2/PortProbeEMRUnprotectedPort: port probe from the attacker"
    }
    assert result.skipped == []


def test_a_single_port_probe_denies_the_prober_inbound() -> None:
    result = extract(event("guardduty_port_probe_unprotected_port.json"), POLICY)

    assert result.targets == [
        Target(
            "198.51.100.200/32", "ingress", "GuardDuty Recon:EC2/PortProbeUnprotectedPort: port probe from the attacker"
        )
    ]
    assert result.skipped == []


def test_twenty_probers_are_twenty_targets_in_the_order_of_the_finding() -> None:
    result = extract(event("guardduty_port_probe_20_sources.json"), POLICY)

    assert pairs(result) == [(f"203.0.113.{n}/32", "ingress") for n in range(1, 21)]
    assert result.skipped == []
    assert result.count == 20


def test_the_instances_own_addresses_are_never_targets_whatever_field_they_appear_in() -> None:
    result = extract(event("guardduty_own_address_remote.json"), POLICY)

    assert pairs(result) == [("192.0.2.200/32", "ingress")]
    assert skips(result) == [
        ("198.51.100.10", f"198.51.100.10 {OWN}"),  # its public address
        ("10.0.1.26", f"10.0.1.26 {OWN}"),  # a secondary private address
        ("2001:db8:10::25", f"2001:db8:10::25 {OWN}"),  # its IPv6 address
    ]


def test_an_inbound_ipv6_connection_denies_the_ipv6_attacker() -> None:
    result = extract(event("guardduty_ipv6_inbound.json"), POLICY)

    assert result.targets == [
        Target(
            "2001:db8:bad:1::7/128",
            "ingress",
            "GuardDuty UnauthorizedAccess:EC2/TorIPCaller: inbound connection from the attacker",
        )
    ]
    assert result.skipped == []


def test_a_database_login_attempt_denies_the_remote_inbound() -> None:
    result = extract(event("guardduty_rds_login_attempt.json"), POLICY)

    assert result.targets == [
        Target(
            "203.0.113.99/32",
            "ingress",
            "GuardDuty CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce: "
            "database login attempt from the attacker",
        )
    ]
    assert result.skipped == []


def test_an_aws_api_call_is_skipped_because_a_nacl_never_sees_it() -> None:
    result = extract(event("guardduty_aws_api_call.json"), POLICY)

    assert result.ignored is None
    assert result.targets == []
    assert skips(result) == [("198.51.100.150", AWS_API)]


def test_a_kubernetes_api_call_is_skipped_because_a_nacl_never_sees_it() -> None:
    result = extract(event("guardduty_kubernetes_api_call.json"), POLICY)

    assert result.targets == []
    assert skips(result) == [("192.0.2.150", K8S_API)]


def test_a_dns_request_names_no_address_to_deny() -> None:
    result = extract(event("guardduty_dns_request.json"), POLICY)

    assert result.targets == []
    assert skips(result) == [
        (None, "DNS request for guarddutyc2activityb.com: the finding names a domain, not an address")
    ]


def test_an_archived_finding_is_ignored() -> None:
    result = extract(event("guardduty_archived.json"), POLICY)

    assert result.ignored == "archived finding"
    assert result.targets == []
    assert result.skipped == []
    assert result.finding_id == "d8f0a2c4e6b8d0f2a4c6e8b0d2f4a6c8"


def test_a_finding_without_an_action_is_malformed() -> None:
    with pytest.raises(MalformedFinding) as raised:
        extract(event("guardduty_malformed_no_action.json"), POLICY)

    assert str(raised.value) == (
        "malformed GuardDuty finding e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9: detail.service.action is missing"
    )
    assert isinstance(raised.value, AutoblockError)
    assert (raised.value.http_status, raised.value.code) == (400, "malformed_finding")
    assert error_class("MalformedFinding", AutoblockError) is MalformedFinding


def test_an_event_that_is_not_from_guardduty_is_ignored() -> None:
    result = extract(event("schedule_sweep.json"), POLICY)

    assert result == Extraction(ignored="not a GuardDuty event (source 'aws.events')")


def test_a_guardduty_event_that_is_not_a_finding_is_ignored() -> None:
    health = changed(
        "guardduty_ssh_bruteforce.json", lambda e: e.update({"detail-type": "GuardDuty Runtime Protection Healthy"})
    )

    result = extract(health, POLICY)

    assert result == Extraction(ignored="not a GuardDuty finding (detail-type 'GuardDuty Runtime Protection Healthy')")


# --- Lambda Protection, Runtime Monitoring, attack sequences ------------------------------------

SEQUENCE_REASON = (
    "attack sequence AttackSequence:EC2/CompromisedInstanceGroup names 6 network endpoints, 4 public addresses "
    "among them: not blocked automatically, a sequence bundles many signals; review it, then "
    "`autoblock block --from-finding FILE`"
)


def test_a_lambda_function_talking_to_a_command_and_control_server_denies_it_outbound() -> None:
    result = extract(event("guardduty_lambda_c2_activity.json"), POLICY)

    assert result.ignored is None
    assert result.targets == [
        Target(
            "203.0.113.66/32",
            "egress",
            "GuardDuty Backdoor:Lambda/C&CActivity.B: outbound connection to a malicious host",
        )
    ]
    assert result.skipped == []
    assert (result.resource_kind, result.account_id, result.region) == ("lambda", "123456789012", "us-east-1")
    assert result.subnet_ids == ("subnet-0123456789abcdef0", "subnet-0fedcba9876543210")  # its vpcConfig


def test_a_lambda_function_outside_a_vpc_using_tor_denies_the_node_outbound_and_has_no_subnets() -> None:
    result = extract(event("guardduty_lambda_tor_client.json"), POLICY)

    assert pairs(result) == [("192.0.2.45/32", "egress")]
    assert result.targets[0].reason == (
        "GuardDuty UnauthorizedAccess:Lambda/TorClient: outbound connection to a malicious host"
    )
    assert (result.resource_kind, result.subnet_ids) == ("lambda", ())


@pytest.mark.parametrize(
    "finding_type",
    [
        "Backdoor:Lambda/C&CActivity.B",
        "CryptoCurrency:Lambda/BitcoinTool.B",
        "Trojan:Lambda/BlackholeTraffic",
        "Trojan:Lambda/DropPoint",
        "UnauthorizedAccess:Lambda/MaliciousIPCaller.Custom",
        "UnauthorizedAccess:Lambda/TorClient",
    ],
)
def test_every_lambda_protection_network_type_denies_the_remote_outbound(finding_type: str) -> None:
    finding = changed("guardduty_lambda_c2_activity.json", lambda e: e["detail"].update({"type": finding_type}))

    assert pairs(extract(finding, POLICY)) == [("203.0.113.66/32", "egress")]


def test_a_lambda_tor_relay_finding_is_left_alone_like_the_ec2_one() -> None:
    relay = changed(
        "guardduty_lambda_c2_activity.json",
        lambda e: e["detail"].update({"type": "UnauthorizedAccess:Lambda/TorRelay"}),
    )

    result = extract(relay, POLICY)

    assert result.targets == []
    assert skips(result) == [
        (
            "203.0.113.66",
            "outbound UnauthorizedAccess:Lambda/TorRelay: GuardDuty does not say this destination is malicious",
        )
    ]


@pytest.mark.parametrize("field", ["ipAddressV4", "ipAddressV6"])
def test_the_lambda_functions_own_address_is_never_a_target(field: str) -> None:
    own = "203.0.113.66" if field == "ipAddressV4" else "2001:db8:feed::66"

    def local_is_remote(e: dict[str, Any]) -> None:
        connection(e)["localIpDetails"] = {field: own}
        connection(e)["remoteIpDetails"] = {field: own}

    result = extract(changed("guardduty_lambda_c2_activity.json", local_is_remote), POLICY)

    assert result.targets == []
    assert skips(result) == [(own, f"{own} is an address of the affected Lambda function orders-export; never blocked")]


def test_runtime_command_and_control_traffic_from_an_instance_denies_the_server_outbound() -> None:
    result = extract(event("guardduty_runtime_c2_activity.json"), POLICY)

    assert result.targets == [
        Target(
            "198.51.100.123/32",
            "egress",
            "GuardDuty Backdoor:Runtime/C&CActivity.B: outbound connection to a malicious host",
        )
    ]
    assert result.skipped == []
    assert (result.resource_kind, result.subnet_ids) == ("instance", ("subnet-0123456789abcdef0",))
    runtime = parse(event("guardduty_runtime_c2_activity.json")).service.runtime_details
    assert runtime is not None and runtime.process is not None and runtime.process.name == "kworkerd"


@pytest.mark.parametrize(
    ("finding_type", "direction", "expected"),
    [
        ("CryptoCurrency:Runtime/BitcoinTool.B", "OUTBOUND", [("198.51.100.123/32", "egress")]),
        ("Trojan:Runtime/DropPoint", "OUTBOUND", [("198.51.100.123/32", "egress")]),
        ("UnauthorizedAccess:Runtime/TorClient", "OUTBOUND", [("198.51.100.123/32", "egress")]),
        ("UnauthorizedAccess:Runtime/TorRelay", "OUTBOUND", []),
        ("Backdoor:Runtime/C&CActivity.B", "INBOUND", [("198.51.100.123/32", "ingress")]),
        ("Backdoor:Runtime/C&CActivity.B", "UNKNOWN", []),
    ],
)
def test_runtime_findings_follow_the_ec2_direction_rules(
    finding_type: str, direction: str, expected: list[tuple[str, str]]
) -> None:
    def retype(e: dict[str, Any]) -> None:
        e["detail"]["type"] = finding_type
        connection(e)["connectionDirection"] = direction

    assert pairs(extract(changed("guardduty_runtime_c2_activity.json", retype), POLICY)) == expected


@pytest.mark.parametrize(
    ("resource_type", "details", "kind"),
    [
        (
            "ECSCluster",
            {"ecsClusterDetails": {"name": "shop", "arn": "arn:aws:ecs:us-east-1:123456789012:cluster/shop"}},
            "ecs",
        ),
        ("EKSCluster", {"eksClusterDetails": {"name": "prod", "vpcId": "vpc-0123456789abcdef0"}}, "eks"),
        ("Container", {}, "container"),
        ("S3Bucket", {}, ""),
    ],
)
def test_a_runtime_finding_on_a_container_workload_denies_the_server_and_names_its_kind(
    resource_type: str, details: dict[str, Any], kind: str
) -> None:
    def on_workload(e: dict[str, Any]) -> None:
        e["detail"]["resource"] = {"resourceType": resource_type, **details}

    result = extract(changed("guardduty_runtime_c2_activity.json", on_workload), POLICY)

    assert pairs(result) == [("198.51.100.123/32", "egress")]
    assert (result.resource_kind, result.subnet_ids) == (kind, ())


def test_the_dns_variant_of_a_runtime_finding_names_a_domain_and_is_skipped() -> None:
    result = extract(event("guardduty_runtime_c2_activity_dns.json"), POLICY)

    assert result.ignored is None
    assert result.targets == []
    assert skips(result) == [
        (None, "DNS request for guarddutyc2activityb.com: the finding names a domain, not an address")
    ]
    assert result.resource_kind == "eks"


def test_a_runtime_connection_without_a_remote_address_is_skipped_saying_so() -> None:
    result = extract(
        changed("guardduty_runtime_c2_activity.json", lambda e: connection(e).pop("remoteIpDetails")), POLICY
    )

    assert result.targets == []
    assert skips(result) == [(None, "the network connection names no remote address")]


def test_a_runtime_finding_about_a_process_without_an_action_is_skipped_not_malformed() -> None:
    def process_only(e: dict[str, Any]) -> None:
        e["detail"]["type"] = "Execution:Runtime/NewBinaryExecuted"
        del e["detail"]["service"]["action"]

    result = extract(changed("guardduty_runtime_c2_activity.json", process_only), POLICY)

    assert result.ignored is None and result.targets == []
    assert skips(result) == [
        (
            None,
            "Execution:Runtime/NewBinaryExecuted: a Runtime Monitoring finding about process activity names no address",
        )
    ]


def test_an_attack_sequence_is_never_blocked_and_says_how_many_endpoints_and_addresses_it_names() -> None:
    result = extract(event("guardduty_attack_sequence.json"), POLICY)

    assert result.ignored == SEQUENCE_REASON
    assert result.targets == [] and result.skipped == []
    assert result.finding_type == "AttackSequence:EC2/CompromisedInstanceGroup"
    assert (result.severity, result.resource_kind, result.account_id) == (9.0, "instance", "123456789012")


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e["detail"].update({"type": "AttackSequence:IAM/CompromisedCredentials"}),
        lambda e: e["detail"]["service"].update({"action": {"actionType": "AWS_API_CALL", "awsApiCallAction": {}}}),
        lambda e: e["detail"].update({"type": "Unheard:EC2/FutureCorrelation"}),  # a sequence by its shape
    ],
)
def test_any_attack_sequence_is_ignored_with_or_without_an_action(change: Callable[[dict[str, Any]], object]) -> None:
    result = extract(changed("guardduty_attack_sequence.json", change), POLICY)

    assert result.ignored is not None and "names 6 network endpoints, 4 public addresses among them" in result.ignored
    assert result.targets == []


def test_an_attack_sequence_type_without_a_sequence_is_ignored_too() -> None:
    bare = changed("guardduty_attack_sequence.json", lambda e: e["detail"]["service"].pop("detection"))

    result = extract(bare, POLICY)

    assert result.ignored is not None
    assert result.ignored.startswith(
        "attack sequence AttackSequence:EC2/CompromisedInstanceGroup names 0 network endpoints, 0 public addresses"
    )


def test_the_public_addresses_of_an_attack_sequence_follow_the_deployments_policy() -> None:
    policy = Policy(allowlist=parse_allowlist(["198.51.100.0/24"]))

    result = extract(event("guardduty_attack_sequence.json"), policy)

    assert result.ignored is not None and "6 network endpoints, 3 public addresses among them" in result.ignored


def test_the_endpoints_of_an_attack_sequence_are_offered_in_the_direction_of_their_traffic() -> None:
    finding = parse(event("guardduty_attack_sequence.json"))

    targets, skipped = sequence_targets(finding, POLICY)

    assert [(t.address, t.direction) for t in targets] == [
        ("203.0.113.50/32", "ingress"),  # INBOUND
        ("198.51.100.123/32", "egress"),  # OUTBOUND
        ("2001:db8:bad::5/128", "egress"),
        ("192.0.2.60/32", "ingress"),  # no direction: both
        ("192.0.2.60/32", "egress"),
    ]
    assert {t.reason for t in targets} == {
        "GuardDuty AttackSequence:EC2/CompromisedInstanceGroup: network endpoint of the attack sequence"
    }
    assert [(s.address, s.reason.split(" (")[0]) for s in skipped] == [
        ("10.0.1.25", "10.0.1.25/32 overlaps 10.0.0.0/8"),
        (None, "endpoint without an address"),
    ]
    assert skipped[1].reason == "endpoint without an address (guarddutyc2activityb.com)"


def test_the_organization_fields_of_an_ec2_finding() -> None:
    result = extract(event("guardduty_ssh_bruteforce.json"), POLICY)

    assert (result.account_id, result.region, result.resource_kind) == ("123456789012", "us-east-1", "instance")
    assert result.subnet_ids == ("subnet-0123456789abcdef0",)


def test_the_subnets_of_every_interface_are_named_once_in_order() -> None:
    def two_interfaces(e: dict[str, Any]) -> None:
        interfaces = e["detail"]["resource"]["instanceDetails"]["networkInterfaces"]
        interfaces.append({**interfaces[0], "subnetId": "subnet-0bbbbbbbbbbbbbbbb", "privateIpAddress": "10.0.9.9"})
        interfaces.append({**interfaces[0], "privateIpAddress": "10.0.1.99"})  # the first subnet again

    result = extract(changed("guardduty_ssh_bruteforce.json", two_interfaces), POLICY)

    assert result.subnet_ids == ("subnet-0123456789abcdef0", "subnet-0bbbbbbbbbbbbbbbb")


def test_an_event_that_is_not_a_finding_has_empty_organization_fields() -> None:
    result = extract(event("schedule_sweep.json"), POLICY)

    assert (result.account_id, result.region, result.subnet_ids, result.resource_kind) == ("", "", (), "")


# --- every fixture -------------------------------------------------------------------------------


def guardduty_fixtures() -> Iterator[str]:
    yield from sorted(p.name for p in EVENTS.glob("guardduty_*.json"))


def remote_addresses(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "remoteIpDetails":
                yield from (inner[k] for k in ("ipAddressV4", "ipAddressV6") if k in inner)
            elif key == "endpoints":  # an attack sequence's
                yield from (e["ip"] for e in inner if "ip" in e)
            else:
                yield from remote_addresses(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from remote_addresses(inner)


@pytest.mark.parametrize("name", list(guardduty_fixtures()))
def test_every_fixture_is_an_eventbridge_envelope_with_documentation_addresses_only(name: str) -> None:
    e = event(name)

    assert (e["source"], e["detail-type"], e["account"], e["region"]) == (
        "aws.guardduty",
        "GuardDuty Finding",
        "123456789012",
        "us-east-1",
    )
    assert (e["detail"]["accountId"], e["detail"]["region"]) == ("123456789012", "us-east-1")
    FindingEvent.model_validate(e)  # the envelope and the finding parse (malformed only lacks the action)
    own = {"10.0.1.25", "10.0.1.26", "198.51.100.10", "2001:db8:10::25"}
    for address in remote_addresses(e["detail"]["service"]):
        assert address in own or any(ip_address(address) in net for net in DOCUMENTATION), address


# --- the rules, one at a time --------------------------------------------------------------------


@pytest.mark.parametrize(
    "finding_type",
    [
        "Backdoor:EC2/C&CActivity.B",
        "CryptoCurrency:EC2/BitcoinTool.B",
        "Trojan:EC2/BlackholeTraffic",
        "Trojan:EC2/DropPoint",
        "UnauthorizedAccess:EC2/MaliciousIPCaller.Custom",
        "UnauthorizedAccess:EC2/TorClient",
        "Backdoor:Runtime/C&CActivity.B",
        "Backdoor:Lambda/C&CActivity.B",
    ],
)
def test_outbound_to_a_malicious_destination_denies_it_outbound(finding_type: str) -> None:
    outbound = changed("guardduty_c2_activity.json", lambda e: e["detail"].update({"type": finding_type}))

    result = extract(outbound, POLICY)

    assert outbound_role(finding_type) == "malicious-destination"
    assert result.targets == [
        Target("198.51.100.77/32", "egress", f"GuardDuty {finding_type}: outbound connection to a malicious host")
    ]
    assert result.skipped == []


@pytest.mark.parametrize(
    "finding_type",
    [
        "Backdoor:EC2/DenialOfService.Tcp",
        "Backdoor:EC2/DenialOfService.UdpOnTcpPorts",
        "Backdoor:EC2/Spambot",
        "Recon:EC2/Portscan",
        "Impact:EC2/PortSweep",
        "Impact:EC2/WinRMBruteForce",
        "UnauthorizedAccess:EC2/RDPBruteForce",
        "UnauthorizedAccess:EC2/SSHBruteForce",
    ],
)
def test_outbound_where_our_instance_attacks_leaves_the_victim_alone(finding_type: str) -> None:
    outbound = changed("guardduty_c2_activity.json", lambda e: e["detail"].update({"type": finding_type}))

    result = extract(outbound, POLICY)

    assert outbound_role(finding_type) == "victim"
    assert result.targets == []
    assert skips(result) == [
        (
            "198.51.100.77",
            f"outbound {finding_type}: the affected resource is the attacker and this address its victim; "
            "denying it would not stop the attack",
        )
    ]


@pytest.mark.parametrize(
    "finding_type",
    [
        "Behavior:EC2/NetworkPortUnusual",
        "Behavior:EC2/TrafficVolumeUnusual",
        "DefenseEvasion:EC2/UnusualDoHActivity",
        "UnauthorizedAccess:EC2/TorRelay",
        "Unheard:EC2/SomethingNew",
    ],
)
def test_outbound_to_a_destination_not_known_to_be_malicious_is_left_alone(finding_type: str) -> None:
    outbound = changed("guardduty_c2_activity.json", lambda e: e["detail"].update({"type": finding_type}))

    result = extract(outbound, POLICY)

    assert outbound_role(finding_type) == "unknown"
    assert result.targets == []
    assert skips(result) == [
        ("198.51.100.77", f"outbound {finding_type}: GuardDuty does not say this destination is malicious")
    ]


@pytest.mark.parametrize(
    "finding_type", ["Recon:EC2/Portscan", "Behavior:EC2/NetworkPortUnusual", "Trojan:EC2/DropPoint"]
)
def test_an_inbound_connection_denies_the_remote_inbound_whatever_the_type(finding_type: str) -> None:
    def inbound(e: dict[str, Any]) -> None:
        e["detail"]["type"] = finding_type
        connection(e)["connectionDirection"] = "INBOUND"

    result = extract(changed("guardduty_c2_activity.json", inbound), POLICY)

    assert pairs(result) == [("198.51.100.77/32", "ingress")]


@pytest.mark.parametrize(("direction", "shown"), [("UNKNOWN", "UNKNOWN"), (None, "missing")])
def test_a_connection_of_unknown_direction_is_left_alone(direction: str | None, shown: str) -> None:
    def unknown(e: dict[str, Any]) -> None:
        if direction is None:
            del connection(e)["connectionDirection"]
        else:
            connection(e)["connectionDirection"] = direction

    result = extract(changed("guardduty_ssh_bruteforce.json", unknown), POLICY)

    assert result.targets == []
    assert skips(result) == [("203.0.113.7", f"connection direction {shown}: cannot tell the attacker from the victim")]


def test_both_the_ipv4_and_the_ipv6_address_of_a_remote_are_denied() -> None:
    dual = changed(
        "guardduty_ssh_bruteforce.json",
        lambda e: connection(e)["remoteIpDetails"].update({"ipAddressV6": "2001:db8:bad::7"}),
    )

    result = extract(dual, POLICY)

    assert pairs(result) == [("203.0.113.7/32", "ingress"), ("2001:db8:bad::7/128", "ingress")]


@pytest.mark.parametrize(
    ("remote", "reason"),
    [
        ("10.0.5.5", "10.0.5.5/32 overlaps 10.0.0.0/8 (private network), which autoblock never blocks"),
        ("169.254.169.254", "169.254.169.254/32 overlaps 169.254.0.0/16 (link-local"),
        ("203.0.113.256", "'203.0.113.256' is not a valid IPv4 or IPv6 address or CIDR"),
        ("::ffff:203.0.113.7", "'::ffff:203.0.113.7' is an IPv4-mapped IPv6 address"),
        ("::ffff:198.51.100.10", f"::ffff:198.51.100.10 {OWN}"),  # our public address, mapped
        ("2001:DB8:10::25", f"2001:DB8:10::25 {OWN}"),  # our IPv6 address, spelled differently
        ("10.0.1.25", f"10.0.1.25 {OWN}"),  # our primary private address
    ],
)
def test_an_address_that_is_never_blockable_is_skipped_with_the_reason(remote: str, reason: str) -> None:
    finding = changed(
        "guardduty_ssh_bruteforce.json", lambda e: connection(e)["remoteIpDetails"].update({"ipAddressV4": remote})
    )

    result = extract(finding, POLICY)

    assert result.targets == []
    assert [s.address for s in result.skipped] == [remote]
    assert result.skipped[0].reason.startswith(reason)


def test_the_deployments_allowlist_applies_to_findings_too() -> None:
    policy = Policy(allowlist=parse_allowlist(["203.0.113.0/24"]))

    result = extract(event("guardduty_ssh_bruteforce.json"), policy)

    assert result.targets == []
    assert result.skipped == [Skip("203.0.113.7", "203.0.113.7/32 overlaps the allowlisted 203.0.113.0/24")]


def test_an_unknown_action_type_is_skipped_naming_it() -> None:
    finding = changed(
        "guardduty_ssh_bruteforce.json",
        lambda e: e["detail"]["service"].update({"action": {"actionType": "TELEPATHY", "telepathyAction": {}}}),
    )

    result = extract(finding, POLICY)

    assert result.targets == []
    assert skips(result) == [(None, "action type TELEPATHY is not one autoblock acts on")]


def test_unknown_fields_at_every_level_are_ignored() -> None:
    def grow(e: dict[str, Any]) -> None:
        e["replay-name"] = "future-envelope-field"
        detail = e["detail"]
        detail["associatedAttackSequenceArn"] = "arn:aws:guardduty:us-east-1:123456789012:detector/x/finding/y"
        detail["resource"]["instanceDetails"]["futureField"] = {"nested": [1, 2, 3]}
        detail["resource"]["instanceDetails"]["networkInterfaces"][0]["futureField"] = True
        detail["service"]["detection"] = {"anomaly": {"profiles": {}}}
        detail["service"]["action"]["futureAction"] = {"remoteIpDetails": {"ipAddressV4": "192.0.2.1"}}
        connection(e)["futureField"] = "x"
        connection(e)["remoteIpDetails"]["futureField"] = 42

    result = extract(changed("guardduty_ssh_bruteforce.json", grow), POLICY)

    assert result == extract(event("guardduty_ssh_bruteforce.json"), POLICY)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda e: e["detail"].pop("service"),
            "malformed GuardDuty finding: detail.service: Field required",
        ),
        (
            lambda e: e["detail"].update({"service": "guardduty"}),
            "malformed GuardDuty finding: detail.service: Input should be a valid dictionary or instance of Service",
        ),
        (
            lambda e: e["detail"].update({"severity": "high"}),
            "malformed GuardDuty finding: detail.severity: "
            "Input should be a valid number, unable to parse string as a number",
        ),
        (
            lambda e: e["detail"].update({"severity": 11}),
            "malformed GuardDuty finding: detail.severity: Input should be less than or equal to 10",
        ),
        (
            lambda e: e["detail"]["service"].update({"count": "many"}),
            "malformed GuardDuty finding: detail.service.count: "
            "Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            lambda e: connection(e)["remoteIpDetails"].update({"ipAddressV4": 203}),
            "malformed GuardDuty finding: detail.service.action.networkConnectionAction.remoteIpDetails.ipAddressV4: "
            "Input should be a valid string",
        ),
        (
            lambda e: e["detail"]["service"]["action"].pop("actionType"),
            "malformed GuardDuty finding a4c6b0f1e2d34f5a8b9c0d1e2f3a4b5c: detail.service.action.actionType is missing",
        ),
        (
            lambda e: e["detail"]["service"]["action"].pop("networkConnectionAction"),
            "malformed GuardDuty finding a4c6b0f1e2d34f5a8b9c0d1e2f3a4b5c: actionType NETWORK_CONNECTION without "
            "detail.service.action.networkConnectionAction",
        ),
    ],
)
def test_a_malformed_finding_is_refused_saying_what_is_wrong(
    change: Callable[[dict[str, Any]], object], message: str
) -> None:
    with pytest.raises(MalformedFinding) as raised:
        extract(changed("guardduty_ssh_bruteforce.json", change), POLICY)

    assert str(raised.value) == message


def test_port_probe_details_of_the_wrong_type_are_malformed() -> None:
    def flatten(e: dict[str, Any]) -> None:
        action = e["detail"]["service"]["action"]["portProbeAction"]
        action["portProbeDetails"] = action["portProbeDetails"][0]

    with pytest.raises(MalformedFinding, match=r"portProbeAction\.portProbeDetails: Input should be a valid list"):
        extract(changed("guardduty_port_probe_unprotected_port.json", flatten), POLICY)


def test_an_event_that_is_not_an_object_is_malformed() -> None:
    with pytest.raises(MalformedFinding, match="the event is not a JSON object"):
        extract(cast(Any, ["not", "an", "event"]), POLICY)


def test_the_models_keep_the_documented_names() -> None:
    ssh = FindingEvent.model_validate(event("guardduty_ssh_bruteforce.json"))
    rds = FindingEvent.model_validate(event("guardduty_rds_login_attempt.json"))
    k8s = FindingEvent.model_validate(event("guardduty_kubernetes_api_call.json"))

    assert ssh.detail_type == "GuardDuty Finding"
    action = ssh.detail.service.action
    assert action is not None and action.network_connection_action is not None
    assert action.network_connection_action.connection_direction == "INBOUND"
    instance = ssh.detail.resource.instance_details
    assert instance is not None
    assert instance.network_interfaces[0].addresses() == [
        "10.0.1.25",
        "10.0.1.25",
        "10.0.1.26",
        "198.51.100.10",
        "2001:db8:10::25",
    ]
    assert rds.detail.service.action is not None
    login = rds.detail.service.action.rds_login_attempt_action
    assert login is not None and login.login_attributes[0].failed_login_attempts == 412
    assert k8s.detail.service.action is not None
    call = k8s.detail.service.action.kubernetes_api_call_action
    assert call is not None and call.source_ips == ["192.0.2.150"]


# --- duration_for ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "duration"),
    [
        (0.5, 900),  # below the documented range: Low
        (1.0, 900),  # Low 1.0-3.9
        (3.9, 900),
        (4.0, 3600),  # Medium 4.0-6.9
        (6.9, 3600),
        (6.95, 3600),  # between two bands: the lower one
        (7.0, 86400),  # High 7.0-8.9
        (8.9, 86400),
        (9.0, 86400),  # Critical 9.0-10.0 counts as High
        (10.0, 86400),
    ],
)
def test_duration_follows_the_guardduty_severity_bands(severity: float, duration: int) -> None:
    assert duration_for(severity, low=900, medium=3600, high=86400) == duration


def test_duration_of_the_fixtures_follows_their_severity() -> None:
    low = extract(event("guardduty_ssh_bruteforce.json"), POLICY)
    medium = extract(event("guardduty_ipv6_inbound.json"), POLICY)
    high = extract(event("guardduty_c2_activity.json"), POLICY)

    assert [duration_for(x.severity, 900, 3600, 86400) for x in (low, medium, high)] == [900, 3600, 86400]
