"""Address parsing and blocking policy (pure).

Parsing is strict: ASCII only, no surrounding white space, no zone id, no IPv4-mapped IPv6,
no leading zeros (``ipaddress`` refuses those), and a CIDR with host bits set is rejected with
the network it probably meant: we never widen or narrow what the caller asked to block.

The never-block list is explicit. ``ipaddress.is_private`` is not used because it also calls
the documentation ranges private, and those are blockable (tests and demos use them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network

from autoblock.errors import InvalidAddress, PolicyViolation

type Network = IPv4Network | IPv6Network

NEVER_BLOCK: tuple[tuple[Network, str], ...] = tuple(
    (ip_network(cidr), why)
    for cidr, why in (
        ("0.0.0.0/8", "'this' network"),
        ("10.0.0.0/8", "private network"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (includes the instance metadata service)"),
        ("172.16.0.0/12", "private network"),
        ("192.168.0.0/16", "private network"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("255.255.255.255/32", "limited broadcast"),
        ("::/128", "unspecified address"),
        ("::1/128", "loopback"),
        ("fc00::/7", "unique local addresses"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
    )
)

_MAPPED_V6 = IPv6Network("::ffff:0:0/96")
_ALLOWED_CHARS = re.compile(r"[0-9A-Fa-f:./]{2,49}")
MAX_ADDRESS_LENGTH = 49  # the longest IPv6 CIDR text is 43 characters


@dataclass(frozen=True)
class Policy:
    """What may be blocked: the template's AllowlistCidrs and MinPrefixLength parameters."""

    allowlist: tuple[Network, ...] = ()
    min_prefix_v4: int = 24
    min_prefix_v6: int = 64


def parse_network(text: str) -> Network:
    """Parse an address or CIDR into the network it names, or raise InvalidAddress."""
    shown = text[:MAX_ADDRESS_LENGTH].encode("unicode_escape").decode("ascii")
    if not _ALLOWED_CHARS.fullmatch(text):
        raise InvalidAddress(
            f"'{shown}' is not an IPv4 or IPv6 address or CIDR "
            "(only ASCII digits, hex letters, ':', '.' and one '/' are accepted)"
        )
    if text.count("/") > 1:
        raise InvalidAddress(f"'{shown}' has more than one '/'")
    prefix = text.partition("/")[2]
    if len(prefix) > 1 and prefix.startswith("0"):
        raise InvalidAddress(f"'{shown}' has a leading zero in its prefix length")
    try:
        network = ip_network(text, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            suggestion = ip_network(text, strict=False)
            raise InvalidAddress(f"'{shown}' has host bits set; the network is {suggestion.compressed}") from None
        raise InvalidAddress(f"'{shown}' is not a valid IPv4 or IPv6 address or CIDR") from None
    if isinstance(network, IPv6Network) and network.subnet_of(_MAPPED_V6):
        raise InvalidAddress(f"'{shown}' is an IPv4-mapped IPv6 address; send the IPv4 address itself")
    return network


def parse_allowlist(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Parse the AllowlistCidrs parameter; host bits are tolerated here (it only widens the list)."""
    return tuple(ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


def check_policy(network: Network, policy: Policy) -> None:
    """Raise PolicyViolation if ``network`` must never be blocked."""
    minimum = policy.min_prefix_v4 if network.version == 4 else policy.min_prefix_v6
    if network.prefixlen < minimum:
        raise PolicyViolation(
            f"{network.compressed} is broader than /{minimum}, the broadest IPv{network.version} "
            f"block allowed (MinPrefixLengthV{network.version})"
        )
    for reserved, why in NEVER_BLOCK:
        if reserved.version == network.version and reserved.overlaps(network):
            raise PolicyViolation(
                f"{network.compressed} overlaps {reserved.compressed} ({why}), which autoblock never blocks"
            )
    for allowed in policy.allowlist:
        if allowed.version == network.version and allowed.overlaps(network):
            raise PolicyViolation(f"{network.compressed} overlaps the allowlisted {allowed.compressed}")


def blockable(text: str, policy: Policy) -> Network:
    """Parse ``text`` and check it against the policy: the one gate every source goes through."""
    network = parse_network(text)
    check_policy(network, policy)
    return network
