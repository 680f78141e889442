"""The core invariants, checked against an emulated stack at any moment: the concurrency tests and
the benchmark's burst look for breaches while requests are in flight."""

from __future__ import annotations

from collections import Counter

from autoblock.logic.refs import locations
from autoblock_local.emulator import Stack


def violations(stack: Stack) -> list[str]:
    """Every breach of the core invariants visible right now, in the NACLs and in the table."""
    found = []
    for nacl_id in [*stack.nacl_ids, *stack.member_refs]:
        entries = stack.managed(nacl_id)
        for egress in (False, True):
            mine = [(n, cidr) for n, e, cidr in entries if e == egress]
            if len(mine) > stack.rule_limit:
                found.append(f"{nacl_id} egress={egress}: {len(mine)} entries > RuleLimit")
            cidrs = Counter(cidr for _, cidr in mine)
            found += [f"{nacl_id} egress={egress}: {c} holds {k} entries" for c, k in cidrs.items() if k > 1]
        # AWS allows 20 entries per NACL, direction and address family (moto does not enforce it).
        quota = Counter((e["Egress"], "Ipv6CidrBlock" in e) for e in stack.entries(nacl_id) if e["RuleNumber"] != 32767)
        found += [f"{nacl_id} {key}: {n} entries > 20" for key, n in quota.items() if n > 20]
    slots = stack.items("SLOT#")
    per_key = Counter(str(s["pk"]) for s in slots)
    found += [f"{k}: {n} slots > RuleLimit" for k, n in per_key.items() if n > stack.rule_limit]
    holders = Counter((str(s["pk"]), str(s["block_id"])) for s in slots)
    found += [f"{k}: block {b} holds {n} slots" for (k, b), n in holders.items() if n > 1]
    addresses = Counter((str(s["pk"]), str(s["cidr"])) for s in slots)
    found += [f"{k}: {c} holds {n} slots" for (k, c), n in addresses.items() if n > 1]
    # One live block per address in each account and Region (organization mode: logic.refs).
    live = Counter(
        (str(b["cidr"]), location)
        for b in stack.items("BLOCK#")
        if b["state"] in ("pending", "active")
        for location in locations(b["nacl_ids"])
    )
    found += [f"{c} {where or 'here'}: {n} live blocks" for (c, where), n in live.items() if n > 1]
    return found
