"""Properties of address parsing, policy and rule-number choice, with shrinking counterexamples."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoblock.errors import InvalidAddress, PolicyViolation
from autoblock.logic.addresses import NEVER_BLOCK, Network, Policy, blockable, parse_network
from autoblock.logic.slots import RuleRange

v4 = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
v6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1))
v4_networks = st.builds(lambda a, p: IPv4Network((int(a), p), strict=False), v4, st.integers(0, 32))
v6_networks = st.builds(lambda a, p: IPv6Network((int(a), p), strict=False), v6, st.integers(0, 128))
networks = st.one_of(v4_networks, v6_networks)


def _span(network: Network) -> tuple[int, int, int]:
    return network.version, int(network.network_address), int(network.broadcast_address)


def _overlap(a: Network, b: Network) -> bool:
    (va, a0, a1), (vb, b0, b1) = _span(a), _span(b)
    return va == vb and a0 <= b1 and b0 <= a1


def oracle(network: Network, policy: Policy) -> bool:
    """Blockable, computed independently with integer ranges."""
    minimum = policy.min_prefix_v4 if network.version == 4 else policy.min_prefix_v6
    reserved = [n for n, _ in NEVER_BLOCK] + list(policy.allowlist)
    return network.prefixlen >= minimum and not any(_overlap(network, r) for r in reserved)


@given(networks)
def test_a_network_s_own_text_parses_back_to_itself(network: Network) -> None:
    assert parse_network(network.compressed) == network
    assert parse_network(parse_network(network.compressed).compressed) == network


@given(st.one_of(v4, v6))
def test_an_address_is_its_host_network(address: IPv4Address | IPv6Address) -> None:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return
    assert parse_network(str(address)) == ip_network(address)
    assert parse_network(str(address)).prefixlen == (32 if address.version == 4 else 128)


@given(v4_networks.filter(lambda n: n.prefixlen < 32), st.integers(1, 2**31))
def test_host_bits_are_refused_never_silently_cleared(network: IPv4Network, offset: int) -> None:
    host = int(network.network_address) + 1 + offset % (network.num_addresses - 1)
    with pytest.raises(InvalidAddress, match=f"the network is {re.escape(network.compressed)}"):
        parse_network(f"{IPv4Address(host)}/{network.prefixlen}")


@given(networks, st.lists(networks, max_size=3), st.integers(0, 32), st.integers(0, 128))
def test_policy_matches_an_independent_oracle(
    network: Network, allowlist: list[Network], min_v4: int, min_v6: int
) -> None:
    policy = Policy(tuple(allowlist), min_v4, min_v6)
    try:
        blockable(network.compressed, policy)
        allowed = True
    except PolicyViolation:
        allowed = False
    except InvalidAddress:
        return  # IPv4-mapped IPv6: refused as malformed, checked elsewhere
    assert allowed == oracle(network, policy)


@given(st.integers(1, 32000), st.integers(1, 40), st.sets(st.integers(0, 32767), max_size=60))
def test_the_chosen_rule_number_is_the_lowest_free_one_in_the_range(start: int, limit: int, taken: set[int]) -> None:
    rules = RuleRange(start, limit) if start + limit - 1 <= 32766 else RuleRange(32766 - limit + 1, limit)
    chosen = rules.first_free(taken)
    free = [n for n in rules.numbers() if n not in taken]
    assert chosen == (free[0] if free else None)
    if chosen is not None:
        assert chosen in rules and chosen not in taken


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 9)), max_size=200))
def test_taking_and_giving_back_never_double_books(steps: list[tuple[bool, int]]) -> None:
    rules = RuleRange(10, 5)
    holder: dict[int, int] = {}  # rule number → block
    for take, block in steps:
        if take and block not in holder.values():
            number = rules.first_free(holder)
            if number is None:
                assert len(holder) == 5
                continue
            assert number not in holder
            holder[number] = block
        elif not take:
            holder = {n: b for n, b in holder.items() if b != block}
        assert len(holder) <= 5
        assert len(set(holder.values())) == len(holder)
        assert all(n in rules for n in holder)
