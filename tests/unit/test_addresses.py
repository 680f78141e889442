from ipaddress import ip_network

import pytest

from autoblock.errors import InvalidAddress, PolicyViolation
from autoblock.logic.addresses import NEVER_BLOCK, Policy, blockable, check_policy, parse_allowlist, parse_network

DEFAULT = Policy()


@pytest.mark.parametrize(
    ("text", "cidr"),
    [
        ("203.0.113.7", "203.0.113.7/32"),
        ("198.51.100.0/28", "198.51.100.0/28"),
        ("192.0.2.1/32", "192.0.2.1/32"),
        ("2001:db8::7", "2001:db8::7/128"),
        ("2001:DB8:0:0::7", "2001:db8::7/128"),
        ("2001:db8:1::/64", "2001:db8:1::/64"),
        ("8.8.8.8", "8.8.8.8/32"),
    ],
)
def test_blockable_addresses_normalise_to_their_cidr(text: str, cidr: str) -> None:
    assert blockable(text, DEFAULT).compressed == cidr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("198.51.100.5/28", "host bits set; the network is 198.51.100.0/28"),
        ("2001:db8::1/64", "host bits set; the network is 2001:db8::/64"),
        ("203.0.113.256", "not a valid"),
        ("203.0.113", "not a valid"),
        ("010.0.0.1", "not a valid"),  # leading zeros: octal or decimal? refuse
        (" 203.0.113.7", "only ASCII digits"),
        ("203.0.113.7\n", "only ASCII digits"),
        ("fe80::1%eth0", "only ASCII digits"),  # zone id
        ("２０３.0.113.7", "only ASCII digits"),  # full-width digits
        ("203.0.113.٧", "only ASCII digits"),  # Arabic-Indic digit
        ("203.0.113.7/32/1", "more than one '/'"),
        ("::ffff:203.0.113.7", "IPv4-mapped"),
        ("example.com", "only ASCII digits"),
        ("", "only ASCII digits"),
        ("203.0.113.7/", "not a valid"),
        ("203.0.113.7/33", "not a valid"),
        ("203.0.113.0/024", "leading zero in its prefix length"),
    ],
)
def test_malformed_addresses_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidAddress, match=message):
        parse_network(text)


@pytest.mark.parametrize(
    "text",
    [
        "0.0.0.1",
        "10.1.2.3",
        "100.64.0.1",
        "127.0.0.1",
        "169.254.169.254",
        "172.16.5.4",
        "172.31.255.255",
        "192.168.1.1",
        "224.0.0.251",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "ff02::1",
    ],
)
def test_never_block_ranges_are_refused(text: str) -> None:
    with pytest.raises(PolicyViolation, match="never blocks"):
        blockable(text, DEFAULT)


def test_a_cidr_that_contains_a_never_block_range_is_refused() -> None:
    with pytest.raises(PolicyViolation, match=r"overlaps 10\.0\.0\.0/8"):
        check_policy(ip_network("10.0.0.0/8"), Policy(min_prefix_v4=0))


@pytest.mark.parametrize("text", ["192.0.2.1", "198.51.100.7", "203.0.113.0/24", "2001:db8::1"])
def test_documentation_ranges_are_blockable_although_python_calls_them_private(text: str) -> None:
    assert ip_network(text).is_private  # the reason the list is explicit
    assert blockable(text, DEFAULT)


def test_cidrs_broader_than_the_minimum_prefix_are_refused() -> None:
    with pytest.raises(PolicyViolation, match="broader than /24"):
        blockable("203.0.112.0/23", DEFAULT)
    with pytest.raises(PolicyViolation, match="broader than /64"):
        blockable("2001:db8::/48", DEFAULT)
    assert blockable("203.0.112.0/23", Policy(min_prefix_v4=16)).prefixlen == 23


def test_the_allowlist_is_never_blocked_in_either_direction_of_overlap() -> None:
    policy = Policy(allowlist=parse_allowlist(["198.51.100.0/28", " 2001:db8:aa::/48 ", ""]))
    with pytest.raises(PolicyViolation, match=r"allowlisted 198\.51\.100\.0/28"):
        blockable("198.51.100.3", policy)
    with pytest.raises(PolicyViolation, match=r"allowlisted 198\.51\.100\.0/28"):
        blockable("198.51.100.0/24", policy)
    with pytest.raises(PolicyViolation, match=r"allowlisted 2001:db8:aa::/48"):
        blockable("2001:db8:aa:1::/64", policy)
    assert blockable("198.51.100.16/28", policy).compressed == "198.51.100.16/28"


def test_the_never_block_list_is_the_documented_one() -> None:
    assert {n.compressed for n, _ in NEVER_BLOCK} == {
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    }
