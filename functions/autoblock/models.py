"""Pydantic models: settings, API bodies, task inputs and the block record."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from autoblock.logic import clock, refs
from autoblock.logic.addresses import Policy, parse_allowlist
from autoblock.logic.slots import RuleRange, split_slot_key

BLOCK_ID_PATTERN = r"^[0-9a-f]{32}$"
Direction = Literal["ingress", "egress", "both"]
WhenFull = Literal["reject", "evict-soonest-expiring", "waf"]
Target = Literal["nacl", "waf"]  # where a block denies its address: Network ACL entries, WAF IP sets
WafScope = Literal["NONE", "REGIONAL", "CLOUDFRONT"]
NACL_ONLY: tuple[Target, ...] = ("nacl",)
TARGETS: tuple[Target, ...] = ("nacl", "waf")
WAF_SET_LIMIT = 10_000  # addresses per WAF IP set (an AWS quota that cannot be raised)
BlockState = Literal[
    "pending", "active", "releasing", "expired", "unblocked", "evicted", "rejected", "failed", "dry-run"
]
LIVE_STATES: frozenset[str] = frozenset({"pending", "active", "releasing"})
# Printable text only: no control characters (log and header injection), bounded length.
Reason = Annotated[StrictStr, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
# A label naming the detector that asked for a block (recorded as the block's and its events' source).
SourceLabel = Annotated[
    StrictStr,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:/@+-]{0,79}$", examples=["elastalert:ssh-brute-force"]),
]
EventKind = Literal[
    "requested",
    "applied",
    "extended",
    "escalated",
    "unblocked",
    "expired",
    "evicted",
    "repaired",
    "rejected",
    "failed",
    "dry-run",
    "rerouted",
]


@dataclass(frozen=True)
class WafSet:
    """One of the stack's WAF IP sets (WAF_IP_SETS: ``<family>:<name>:<id>``)."""

    family: Literal[4, 6]
    name: str
    id: str

    @classmethod
    def parse(cls, entry: str) -> WafSet:
        family, _, rest = entry.partition(":")
        name, _, set_id = rest.partition(":")
        if family not in ("4", "6") or not name or not set_id or ":" in set_id:
            raise ValueError(f"WAF_IP_SETS: {entry!r} is not <family>:<name>:<id>")
        return cls(4 if family == "4" else 6, name, set_id)


class Settings(BaseModel):
    """The environment every function gets from template.yaml's Globals; read once, in one place."""

    model_config = ConfigDict(frozen=True)

    table_name: str
    nacl_ids: tuple[str, ...] = ()  # the own account and Region's (NetworkAclIds)
    member_nacl_ids: tuple[str, ...] = ()  # account:region:acl-id triples (MemberNetworkAclIds)
    member_role_name: str = "autoblock-member"
    nacl_from_finding: bool = False
    home_account_id: str = ""
    home_region: str = ""
    partition: str = "aws"
    rule_number_start: int
    rule_limit: int = Field(ge=1, le=40)
    default_duration_seconds: int = Field(gt=0)
    max_duration_seconds: int = Field(gt=0)
    allowlist_cidrs: tuple[str, ...] = ()
    min_prefix_length_v4: int = Field(ge=0, le=32)
    min_prefix_length_v6: int = Field(ge=0, le=128)
    when_full: WhenFull = "reject"
    state_machine_arn: str = ""
    token_secret_id: str = ""
    sweeper_grace_seconds: int = Field(default=60, ge=0)
    guardduty_min_severity: float = Field(default=1.0, ge=0, le=10)
    guardduty_duration_low: int = Field(default=3600, gt=0)
    guardduty_duration_medium: int = Field(default=21600, gt=0)
    guardduty_duration_high: int = Field(default=86400, gt=0)
    dry_run: bool = False
    history_retention_days: int = Field(default=90, ge=1)
    escalation_window_days: int = Field(default=30, ge=0)
    escalation_factor: float = Field(default=2, ge=1)
    waf_scope: WafScope = "NONE"
    waf_ip_sets: tuple[str, ...] = ()  # <family>:<name>:<id> of each of the stack's IP sets
    default_targets: tuple[Target, ...] = ("nacl",)
    guardduty_targets: tuple[Target, ...] = ("nacl",)

    @field_validator(
        "nacl_ids",
        "member_nacl_ids",
        "allowlist_cidrs",
        "waf_ip_sets",
        "default_targets",
        "guardduty_targets",
        mode="before",
    )
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _some_nacl(self) -> Settings:
        for acl_id in self.nacl_ids:
            if ":" in acl_id or "|" in acl_id:  # they would read as another account's, or break a slot key
                raise ValueError(f"NetworkAclIds: {acl_id!r} is not a Network ACL id (acl-...)")
        for triple in self.member_nacl_ids:
            refs.member_ref(triple, self.home_account_id, self.home_region)  # ValueError if malformed
        if not self.nacl_ids and not self.member_nacl_ids:
            raise ValueError("no Network ACL to block in: set NetworkAclIds or MemberNetworkAclIds")
        for entry in self.waf_ip_sets:
            WafSet.parse(entry)  # ValueError if malformed
        if self.waf_ip_sets and self.waf_scope == "NONE":
            raise ValueError("WAF_IP_SETS is set but WafScope is NONE")
        if not self.waf_ip_sets:
            for name, value in (
                ("DefaultTargets", self.default_targets),
                ("GuardDutyTargets", self.guardduty_targets),
                ("WhenFull", (self.when_full,)),
            ):
                if "waf" in value:
                    raise ValueError(f"{name} names waf but the stack has no WAF IP set (WafScope=NONE)")
        return self

    @cached_property
    def waf_sets(self) -> tuple[WafSet, ...]:
        """The stack's WAF IP sets, in the template's order (set 1 of a family first)."""
        return tuple(WafSet.parse(entry) for entry in self.waf_ip_sets)

    @property
    def waf_region(self) -> str:
        """Where the IP sets live: us-east-1 for CloudFront (AWS requires it), else the stack's Region."""
        return "us-east-1" if self.waf_scope == "CLOUDFRONT" else self.home_region

    @property
    def organization(self) -> bool:
        """Organization mode: NACLs of other accounts or Regions are configured."""
        return bool(self.member_nacl_ids)

    @cached_property
    def nacl_refs(self) -> tuple[str, ...]:
        """Every configured NACL as a reference (``logic.refs``): the own ones, then the members'."""
        members = (refs.member_ref(t, self.home_account_id, self.home_region) for t in self.member_nacl_ids)
        return tuple(dict.fromkeys((*self.nacl_ids, *members)))

    def place(self, ref: str) -> tuple[str, str, str]:
        """(account, region, acl id) of a NACL reference."""
        return refs.place(ref, self.home_account_id, self.home_region)

    @property
    def rule_range(self) -> RuleRange:
        return RuleRange(self.rule_number_start, self.rule_limit)

    @property
    def history_ttl_seconds(self) -> int:
        return self.history_retention_days * 86400

    @property
    def policy(self) -> Policy:
        return Policy(parse_allowlist(self.allowlist_cidrs), self.min_prefix_length_v4, self.min_prefix_length_v6)

    @classmethod
    def from_env(cls) -> Settings:
        names = cls.model_fields.keys()
        return cls.model_validate({n: os.environ[n.upper()] for n in names if n.upper() in os.environ})


@cache
def settings() -> Settings:
    """The process's settings, parsed on first use (tests clear this cache between stacks)."""
    return Settings.from_env()


class BlockRequest(BaseModel):
    """Body of POST /blocks."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ip: Annotated[
        StrictStr, Field(min_length=1, max_length=64, examples=["203.0.113.7", "2001:db8::7", "198.51.100.0/28"])
    ]
    duration: StrictInt | None = Field(default=None, description="Seconds; DefaultDurationSeconds when left out")
    reason: Reason | None = None
    direction: Direction = "ingress"
    dry_run: StrictBool = Field(
        default=False, description="Record what would happen, write no NACL entry (forced on by DryRun=true)"
    )
    source: SourceLabel | None = Field(
        default=None, description='The detector asking, e.g. "elastalert:ssh-brute-force"; else "api:<request id>"'
    )
    accounts: list[Annotated[StrictStr, Field(pattern=refs.ACCOUNT_PATTERN)]] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Organization mode: block only in these accounts' configured NACLs (default: every account)",
    )
    regions: list[Annotated[StrictStr, Field(pattern=refs.REGION_PATTERN)]] | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        description="Organization mode: block only in these Regions' configured NACLs (default: every Region)",
    )
    targets: list[Target] | None = Field(
        default=None,
        min_length=1,
        max_length=2,
        description='Where to deny the address: "nacl" (Network ACL entries), "waf" (the stack\'s WAF IP sets) '
        "or both (default: DefaultTargets)",
    )

    @field_validator("targets")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("each target once")
        return value


class Block(BaseModel):
    """One block as stored in the table: the single source of truth."""

    id: str
    cidr: str
    family: Literal[4, 6]
    direction: Direction
    nacl_ids: list[str]
    state: BlockState
    reason: str = ""
    source: str = "api"
    created_at: int
    expires_at: int
    rules: dict[str, int] = Field(default_factory=dict)
    targets: list[Target] = Field(default_factory=lambda: list(NACL_ONLY))
    waf_set: str | None = None  # the name of the WAF IP set holding its address (target "waf")
    evicted: list[dict[str, str]] = Field(default_factory=list)  # {"id", "ip"} of blocks evicted for it
    failures: dict[str, str] = Field(default_factory=dict)  # location (logic.refs) → why it is not blocked there
    dry_run: bool = False
    state_since: int = 0  # when the block entered its current state (the sweeper's grace periods)
    ending_state: str | None = None  # while releasing: the state it ends in, so anyone can finish it
    ending_reason: str | None = None
    ending_source: str | None = None  # who ended it (an unblock's request), else the block's source
    ended_at: int | None = None
    end_reason: str | None = None

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def locations(self) -> list[str]:
        """Where it holds the address's lock: each account and Region of its NACLs, and the stack's
        own for its WAF IP set."""
        held = refs.locations(self.nacl_ids)
        if self.waf_set is not None and refs.HOME not in held:
            held.append(refs.HOME)
        return held


class RuleView(BaseModel):
    nacl_id: str
    direction: Literal["ingress", "egress"]
    rule_number: int
    account: str = ""
    region: str = ""


class FailureView(BaseModel):
    """An account and Region the block could not be applied in (organization mode)."""

    account: str
    region: str
    reason: str


class EvictedView(BaseModel):
    id: str
    ip: str


class WafView(BaseModel):
    """Where a block denies its address in WAF (target ``waf``)."""

    ip_set: str
    scope: WafScope
    state: Literal["pending", "applied", "removed"]


class BlockView(BaseModel):
    """A block as the API shows it."""

    id: str
    ip: str
    direction: Direction
    state: BlockState
    reason: str
    source: str
    created_at: str
    expires_at: str
    targets: list[Target] = Field(default_factory=lambda: list(NACL_ONLY))
    rules: list[RuleView]
    waf: WafView | None = Field(default=None, description="Target waf: the IP set holding the address")
    evicted: list[EvictedView] = Field(
        default_factory=list,
        description="Blocks ended early to make room for this one (WhenFull=evict-soonest-expiring)",
    )
    failures: list[FailureView] = Field(
        default_factory=list, description="Organization mode: accounts and Regions where it could not be applied"
    )
    also_extended: list[str] = Field(
        default_factory=list,
        description="POST /blocks, organization mode: the address's live blocks in other accounts and Regions, extended",
    )
    dry_run: bool
    ended_at: str | None = None
    end_reason: str | None = None

    @classmethod
    def of(cls, block: Block, home: tuple[str, str] = ("", ""), waf_scope: WafScope = "NONE") -> BlockView:
        """``home``: the stack's own account and Region, shown for its own NACLs."""
        rules = []
        for ref, direction, number in sorted((*split_slot_key(k), n) for k, n in block.rules.items()):
            account, region, acl_id = refs.place(ref, *home)
            rules.append(
                RuleView(nacl_id=acl_id, direction=direction, rule_number=number, account=account, region=region)
            )
        failures = [
            FailureView(account=account, region=region, reason=why)
            for (account, region), why in sorted(
                (refs.whereabouts(location, *home), why) for location, why in block.failures.items()
            )
        ]
        return cls(
            id=block.id,
            ip=block.cidr,
            direction=block.direction,
            state=block.state,
            reason=block.reason,
            source=block.source,
            created_at=clock.iso_z(block.created_at),
            expires_at=clock.iso_z(block.expires_at),
            targets=list(block.targets),
            rules=rules,
            waf=(
                WafView(
                    ip_set=block.waf_set,
                    scope=waf_scope,
                    state="applied"
                    if block.state == "active"
                    else "pending"
                    if block.state == "pending"
                    else "removed",
                )
                if block.waf_set is not None
                else None
            ),
            evicted=[EvictedView(id=e["id"], ip=e["ip"]) for e in block.evicted],
            failures=failures,
            dry_run=block.dry_run,
            ended_at=clock.iso_z(block.ended_at) if block.ended_at is not None else None,
            end_reason=block.end_reason,
        )


class BlockList(BaseModel):
    blocks: list[BlockView]


class HistoryEvent(BaseModel):
    """One event of a block's life as stored (``dal.table``: its own item, kept HistoryRetentionDays).
    ``block_id`` is empty for a request refused before it got a block."""

    at: float  # epoch seconds; the item's sort key keeps milliseconds
    block_id: str
    cidr: str
    event: EventKind
    source: str
    reason: str = ""
    duration: int | None = None
    expires_at: int | None = None


class EventView(BaseModel):
    at: str
    block_id: str
    ip: str
    event: EventKind
    source: str
    reason: str
    duration: int | None
    expires_at: str | None

    @classmethod
    def of(cls, event: HistoryEvent) -> EventView:
        return cls(
            at=clock.iso_z(event.at),
            block_id=event.block_id,
            ip=event.cidr,
            event=event.event,
            source=event.source,
            reason=event.reason,
            duration=event.duration,
            expires_at=clock.iso_z(event.expires_at) if event.expires_at is not None else None,
        )


class BlockHistory(BaseModel):
    block_id: str
    ip: str
    events: list[EventView]


class AddressHistory(BaseModel):
    ip: str
    events: list[EventView]


class SlotUsage(BaseModel):
    nacl_id: str
    direction: Literal["ingress", "egress"]
    account: str = ""
    region: str = ""
    used: int
    foreign: int
    free: int
    limit: int


class WafSetUsage(BaseModel):
    name: str
    family: Literal[4, 6]
    used: int
    limit: int = WAF_SET_LIMIT


class Status(BaseModel):
    rule_number_start: int
    rule_limit: int
    when_full: WhenFull
    dry_run: bool
    active_blocks: int
    slots: list[SlotUsage]
    waf_scope: WafScope = "NONE"
    waf_sets: list[WafSetUsage] = Field(default_factory=list)


class FieldError(BaseModel):
    field: str
    type: str
    message: str


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer: a code, a sentence, and for invalid_request each field at fault."""

    error: str
    message: str
    fields: list[FieldError] | None = None


class Ticket(BaseModel):
    """What a block's execution carries from state to state: enough to apply and release the block
    without reading it again. The API (or the finding task) hands it to StartExecution; every task
    returns it, updated; the ASL's Choice states read ``state`` and its Wait reads ``expires_at``."""

    model_config = ConfigDict(extra="ignore")

    block_id: Annotated[str, Field(pattern=BLOCK_ID_PATTERN)]
    state: BlockState
    expires_at: str  # ISO 8601, UTC, ending in Z (Wait.TimestampPath)
    cidr: str = ""
    family: Literal[4, 6] = 4
    direction: Direction = "ingress"
    source: str = ""
    rules: dict[str, int] = Field(default_factory=dict)
    nacl_ids: list[str] = Field(default_factory=list)  # the NACLs it is to be applied in (references)
    waf_set: str | None = None
    reserved: bool = False  # every (NACL, direction) of the block already holds a rule number

    @classmethod
    def of(cls, block: Block, reserved: bool = False) -> Ticket:
        return cls(
            nacl_ids=list(block.nacl_ids),
            block_id=block.id,
            state=block.state,
            expires_at=clock.iso_z(block.expires_at),
            cidr=block.cidr,
            family=block.family,
            direction=block.direction,
            source=block.source,
            rules=dict(block.rules),
            waf_set=block.waf_set,
            reserved=reserved,
        )


class TaskError(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    error: str = Field(alias="Error", default="States.Unknown")
    cause: str = Field(alias="Cause", default="")


class TaskInput(BaseModel):
    """What the state machine sends the task function: which task, the block's ticket and, for
    Compensate, the error it caught."""

    model_config = ConfigDict(extra="ignore")

    task: Literal["reserve", "apply", "expire", "compensate"]
    ticket: Ticket
    error: TaskError = Field(default_factory=TaskError)


@dataclass(frozen=True)
class Entry:
    """One Network ACL entry as EC2 describes it."""

    nacl_id: str
    rule_number: int
    egress: bool
    action: str
    protocol: str
    cidr: str

    def is_deny_of(self, cidr: str) -> bool:
        return self.action == "deny" and self.protocol == "-1" and self.cidr == cidr


@dataclass(frozen=True)
class Address:
    """What the table knows of an address before a new block: the live block holding its lock in
    each location asked about (``logic.refs``: one lock per account and Region) and when its
    earlier blocks were applied (escalation)."""

    holders: dict[str, str]
    applied: tuple[int, ...] = ()

    @property
    def holder(self) -> str | None:
        """The holder in the first location that has one (single-account: the address's holder)."""
        return next((self.holders[loc] for loc in sorted(self.holders)), None)


# Signals between the data layer and the logic (internal: they never leave a Lambda).


class Unchanged(Exception):
    """A conditional write found the block not in the expected state; carries it as it is."""

    def __init__(self, current: Block | None) -> None:
        super().__init__("condition failed")
        self.current = current


class EntryExists(Exception):
    """The rule number is taken in that NACL and direction; carries the entry that is there."""

    def __init__(self, entry: Entry | None) -> None:
        super().__init__("entry exists")
        self.entry = entry


class AddressLocked(Exception):
    """Another live block holds the address's lock."""


class SetFull(Exception):
    """The WAF IP set the new block asked for holds WAF_SET_LIMIT addresses already."""

    def __init__(self, name: str) -> None:
        super().__init__(f"WAF IP set {name} is full")
        self.name = name


class SlotTaken(Exception):
    """Another block holds a rule number the new block asked for."""

    def __init__(self, key: str, number: int) -> None:
        super().__init__(f"{key} rule {number} is taken")
        self.key = key
        self.number = number
