"""Where a Network ACL is: its reference, as blocks, rule slots and history carry it (pure).

A NACL of the stack's own account and Region is named by its id alone (``acl-0abc…``), as it has
always been: single-account deployments keep their table unchanged. A NACL of another account or
Region (organization mode, ``MemberNetworkAclIds``) is named ``<account>:<region>:<acl id>``, so
every rule slot, quota and sweep is per (account, Region, NACL, direction) with no other change.
Its *location* is ``<account>:<region>``; the own account and Region is the location ``""``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

HOME = ""  # the location of the stack's own account and Region
ACCOUNT_PATTERN = r"^\d{12}$"
REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$"
_TRIPLE = re.compile(r"^(\d{12}):([a-z]{2}(?:-[a-z]+)+-\d{1,2}):(acl-[0-9a-z]+)$")


@dataclass(frozen=True)
class NaclRef:
    """One NACL: ``account`` and ``region`` empty for the stack's own."""

    acl_id: str
    account: str = ""
    region: str = ""

    @property
    def location(self) -> str:
        return f"{self.account}:{self.region}" if self.account else HOME

    def __str__(self) -> str:
        return f"{self.account}:{self.region}:{self.acl_id}" if self.account else self.acl_id


def parse(ref: str) -> NaclRef:
    """A reference as stored (``acl-…`` or ``account:region:acl-…``)."""
    if ":" not in ref:
        return NaclRef(ref)
    account, region, acl_id = ref.split(":", 2)
    return NaclRef(acl_id, account, region)


def member_ref(text: str, home_account: str, home_region: str) -> str:
    """One ``MemberNetworkAclIds`` triple as a reference: the own account and Region's NACLs are
    named by their id alone. ValueError for a malformed triple."""
    match = _TRIPLE.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not account:region:acl-id (e.g. 111122223333:eu-west-1:acl-0abc12345678)")
    account, region, acl_id = match.groups()
    return acl_id if (account, region) == (home_account, home_region) else f"{account}:{region}:{acl_id}"


def location_of(ref: str) -> str:
    return parse(ref).location


def locations(refs: Iterable[str]) -> list[str]:
    """The distinct locations of ``refs``, in a stable order (the own one first)."""
    return sorted({location_of(r) for r in refs})


def by_location(refs: Iterable[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for ref in refs:
        grouped.setdefault(location_of(ref), []).append(ref)
    return grouped


def place(ref: str, home_account: str, home_region: str) -> tuple[str, str, str]:
    """(account, region, acl id) of a reference, the own ones filled in."""
    parsed = parse(ref)
    return (parsed.account or home_account, parsed.region or home_region, parsed.acl_id)


def whereabouts(location: str, home_account: str, home_region: str) -> tuple[str, str]:
    """(account, region) of a location, the own one filled in."""
    if location == HOME:
        return (home_account, home_region)
    account, region = location.split(":", 1)
    return (account, region)


def describe(location: str) -> str:
    """A location in words: ``account 111122223333 in eu-west-1`` or ``this account and Region``."""
    if location == HOME:
        return "this account and Region"
    account, region = location.split(":", 1)
    return f"account {account} in {region}"
