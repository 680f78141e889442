"""Pydantic models of the EventBridge "GuardDuty Finding" event.

EventBridge delivers each GuardDuty finding as the ``detail`` of an envelope whose ``source`` is
``aws.guardduty`` and whose ``detail-type`` is ``GuardDuty Finding``; the detail is the finding
exactly as the GuardDuty API's ``GetFindings`` returns it (the ``Finding`` shape of the API
reference, with the same camelCase names). The models keep the names and nesting of that shape and
ignore every field they do not declare, because GuardDuty adds fields (and whole protection plans)
over time. Only what autoblock reads is declared; everything here is optional unless the API
reference marks it required, except ``service``, without which a finding says nothing to act on.

Besides EC2 findings, the shape covers Lambda Protection (``resource.lambdaDetails``, whose
``vpcConfig`` is there only for a function in a VPC), Runtime Monitoring (``service.runtimeDetails``
names the process; the network activity is the same ``service.action`` as for EC2, on an
``Instance``, ``EKSCluster`` or ``ECSCluster`` resource) and Extended Threat Detection's attack
sequences (no ``action``; ``service.detection.sequence`` lists up to 400 network ``endpoints``, each
with an ``ip`` or a ``domain``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class GuardDutyModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, alias_generator=to_camel)


# --- addresses and ports ---------------------------------------------------------------------


class Organization(GuardDutyModel):
    asn: str | None = None
    asn_org: str | None = None
    isp: str | None = None
    org: str | None = None


class Country(GuardDutyModel):
    country_code: str | None = None
    country_name: str | None = None


class City(GuardDutyModel):
    city_name: str | None = None


class GeoLocation(GuardDutyModel):
    lat: float | None = None
    lon: float | None = None


class RemoteIpDetails(GuardDutyModel):
    """The other end of the activity: the attacker, the victim or the contacted host."""

    ip_address_v4: str | None = None
    ip_address_v6: str | None = None
    organization: Organization | None = None
    country: Country | None = None
    city: City | None = None
    geo_location: GeoLocation | None = None


class LocalIpDetails(GuardDutyModel):
    """Our end of the activity (an address of the affected resource)."""

    ip_address_v4: str | None = None
    ip_address_v6: str | None = None


class PortDetails(GuardDutyModel):
    """``localPortDetails`` and ``remotePortDetails``."""

    port: int | None = None
    port_name: str | None = None


# --- service.action ----------------------------------------------------------------------------


class NetworkConnectionAction(GuardDutyModel):
    """actionType NETWORK_CONNECTION; ``connectionDirection`` is INBOUND, OUTBOUND or UNKNOWN."""

    connection_direction: str | None = None
    remote_ip_details: RemoteIpDetails | None = None
    remote_port_details: PortDetails | None = None
    local_ip_details: LocalIpDetails | None = None
    local_port_details: PortDetails | None = None
    local_network_interface: str | None = None
    protocol: str | None = None
    blocked: bool | None = None


class PortProbeDetail(GuardDutyModel):
    local_port_details: PortDetails | None = None
    local_ip_details: LocalIpDetails | None = None
    remote_ip_details: RemoteIpDetails | None = None


class PortProbeAction(GuardDutyModel):
    """actionType PORT_PROBE: one entry per probe, each with the prober's address."""

    blocked: bool | None = None
    port_probe_details: list[PortProbeDetail] = Field(default_factory=list)


class AwsApiCallAction(GuardDutyModel):
    """actionType AWS_API_CALL: a call to a public AWS endpoint."""

    api: str | None = None
    service_name: str | None = None
    caller_type: str | None = None
    error_code: str | None = None
    user_agent: str | None = None
    remote_ip_details: RemoteIpDetails | None = None


class KubernetesApiCallAction(GuardDutyModel):
    """actionType KUBERNETES_API_CALL: a call to an EKS cluster's API endpoint."""

    request_uri: str | None = None
    verb: str | None = None
    source_ips: list[str] = Field(default_factory=list, alias="sourceIPs")
    user_agent: str | None = None
    remote_ip_details: RemoteIpDetails | None = None
    status_code: int | None = None


class DnsRequestAction(GuardDutyModel):
    """actionType DNS_REQUEST: names a domain, never an address."""

    domain: str | None = None
    domain_with_suffix: str | None = None
    protocol: str | None = None
    blocked: bool | None = None


class LoginAttribute(GuardDutyModel):
    user: str | None = None
    application: str | None = None
    failed_login_attempts: int | None = None
    successful_login_attempts: int | None = None


class RdsLoginAttemptAction(GuardDutyModel):
    """actionType RDS_LOGIN_ATTEMPT (the API spells ``LoginAttributes`` with a capital L)."""

    remote_ip_details: RemoteIpDetails | None = None
    login_attributes: list[LoginAttribute] = Field(default_factory=list, alias="LoginAttributes")


class Action(GuardDutyModel):
    """``service.action``: ``actionType`` says which one of the sub-objects describes the activity."""

    action_type: str | None = None
    network_connection_action: NetworkConnectionAction | None = None
    port_probe_action: PortProbeAction | None = None
    aws_api_call_action: AwsApiCallAction | None = None
    dns_request_action: DnsRequestAction | None = None
    kubernetes_api_call_action: KubernetesApiCallAction | None = None
    rds_login_attempt_action: RdsLoginAttemptAction | None = None


class ProcessDetails(GuardDutyModel):
    name: str | None = None
    executable_path: str | None = None
    pid: int | None = None


class RuntimeDetails(GuardDutyModel):
    """``service.runtimeDetails`` of a Runtime Monitoring finding: the process behind the activity."""

    process: ProcessDetails | None = None


class NetworkConnection(GuardDutyModel):
    direction: str | None = None  # INBOUND or OUTBOUND


class NetworkEndpoint(GuardDutyModel):
    """One network endpoint of an attack sequence: an ``ip`` (IPv4 or IPv6), a ``domain``, or both,
    and the direction of its traffic when GuardDuty knows it."""

    id: str | None = None  # required by the API reference; optional here, nothing reads it
    ip: str | None = None
    domain: str | None = None
    port: int | None = None
    connection: NetworkConnection | None = None


class Sequence(GuardDutyModel):
    """``service.detection.sequence``: the signals, actors, resources and endpoints of an attack sequence."""

    uid: str | None = None
    description: str | None = None
    endpoints: list[NetworkEndpoint] = Field(default_factory=list)


class Detection(GuardDutyModel):
    sequence: Sequence | None = None


class Service(GuardDutyModel):
    """``service``: what GuardDuty saw, how often, and the finding's own state."""

    action: Action | None = None
    detection: Detection | None = None
    runtime_details: RuntimeDetails | None = None
    feature_name: str | None = None  # RuntimeMonitoring, Lambda…
    archived: bool = False
    count: int | None = Field(default=None, ge=0)
    detector_id: str | None = None
    event_first_seen: str | None = None
    event_last_seen: str | None = None
    resource_role: str | None = None  # TARGET or ACTOR
    service_name: str | None = None
    additional_info: dict[str, Any] | None = None


# --- resource ----------------------------------------------------------------------------------


class PrivateIpAddressDetails(GuardDutyModel):
    private_ip_address: str | None = None
    private_dns_name: str | None = None


class NetworkInterface(GuardDutyModel):
    network_interface_id: str | None = None
    private_ip_address: str | None = None
    private_ip_addresses: list[PrivateIpAddressDetails] = Field(default_factory=list)
    public_ip: str | None = None
    ipv6_addresses: list[str] = Field(default_factory=list)
    private_dns_name: str | None = None
    public_dns_name: str | None = None
    subnet_id: str | None = None
    vpc_id: str | None = None

    def addresses(self) -> list[str]:
        """Every address of this interface, as the finding spells them."""
        private = [self.private_ip_address, *(p.private_ip_address for p in self.private_ip_addresses)]
        return [a for a in (*private, self.public_ip, *self.ipv6_addresses) if a]


class InstanceDetails(GuardDutyModel):
    instance_id: str | None = None
    instance_type: str | None = None
    instance_state: str | None = None
    availability_zone: str | None = None
    image_id: str | None = None
    network_interfaces: list[NetworkInterface] = Field(default_factory=list)


class SecurityGroup(GuardDutyModel):
    group_id: str | None = None
    group_name: str | None = None


class VpcConfig(GuardDutyModel):
    """A Lambda function's VPC; absent for a function outside any VPC."""

    subnet_ids: list[str] = Field(default_factory=list)
    vpc_id: str | None = None
    security_groups: list[SecurityGroup] = Field(default_factory=list)


class LambdaDetails(GuardDutyModel):
    function_name: str | None = None
    function_arn: str | None = None
    function_version: str | None = None
    description: str | None = None
    last_modified_at: str | None = None
    revision_id: str | None = None
    role: str | None = None
    vpc_config: VpcConfig | None = None


class EcsClusterDetails(GuardDutyModel):
    name: str | None = None
    arn: str | None = None
    status: str | None = None


class EksClusterDetails(GuardDutyModel):
    name: str | None = None
    arn: str | None = None
    vpc_id: str | None = None
    status: str | None = None


class Resource(GuardDutyModel):
    """``resource``: ``resourceType`` is Instance, Lambda, EKSCluster, ECSCluster, AccessKey, …"""

    resource_type: str | None = None
    instance_details: InstanceDetails | None = None
    lambda_details: LambdaDetails | None = None
    ecs_cluster_details: EcsClusterDetails | None = None
    eks_cluster_details: EksClusterDetails | None = None


# --- the finding and its envelope --------------------------------------------------------------


class Finding(GuardDutyModel):
    """``detail``: the finding (required fields as the API reference marks them, plus ``service``)."""

    schema_version: str
    account_id: str
    region: str
    partition: str | None = None
    id: str = Field(min_length=1)
    arn: str
    type: str = Field(min_length=1, max_length=100, pattern=r"^[\x20-\x7e]+$")  # printable ASCII
    resource: Resource
    service: Service
    severity: float = Field(ge=0.0, le=10.0, allow_inf_nan=False)
    created_at: str
    updated_at: str
    title: str | None = None
    description: str | None = None


class FindingEvent(GuardDutyModel):
    """The EventBridge envelope around one finding."""

    version: str
    id: str
    detail_type: str = Field(alias="detail-type")
    source: str
    account: str = ""  # always sent by EventBridge; optional so a replayed event without it still parses
    time: str
    region: str
    resources: list[str] = Field(default_factory=list)
    detail: Finding
