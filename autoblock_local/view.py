"""What the terminal shows while the local stack runs: the live blocks, where each is held (NACL rule
numbers, WAF IP set) and time left, each NACL's managed range as the NACL itself holds it and, on a
stack with WAF, each WAF IP set's fill."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from autoblock.handlers import wiring
from autoblock.models import BlockView, WafSetUsage
from autoblock_local.emulator import Stack


@dataclass(frozen=True)
class Snapshot:
    blocks: list[BlockView]
    used: dict[tuple[str, str], int]  # (NACL, direction) → entries in the managed range
    taken_at: float
    waf_sets: list[WafSetUsage] = field(default_factory=list)  # empty: the stack has no WAF
    waf_scope: str = "NONE"


def snapshot(stack: Stack) -> Snapshot:
    run = wiring.lifecycle()
    scope = run.ctx.settings.waf_scope
    blocks = sorted((BlockView.of(b, waf_scope=scope) for b in run.live()), key=lambda b: b.expires_at)
    used: dict[tuple[str, str], int] = {}
    for nacl_id in [*stack.nacl_ids, *stack.member_refs]:
        for direction in ("ingress", "egress"):
            used[(nacl_id, direction)] = 0
        for _number, egress, _cidr in stack.managed(nacl_id):
            used[(nacl_id, "egress" if egress else "ingress")] += 1
    waf_sets = run.status().waf_sets if run.ctx.waf is not None else []
    return Snapshot(blocks, used, time.time(), waf_sets, scope)


def _left(expires_at: str, now: float) -> str:
    seconds = int(calendar.timegm(time.strptime(expires_at, "%Y-%m-%dT%H:%M:%SZ")) - now)
    if seconds <= 0:
        return "due"
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _rules(block: BlockView) -> str:
    """``10`` when every NACL holds the block at rule 10 (per direction), else each NACL's number."""
    by_direction: dict[str, dict[str, int]] = {}
    for rule in block.rules:
        by_direction.setdefault(rule.direction, {})[rule.nacl_id] = rule.rule_number
    parts = []
    for direction, numbers in sorted(by_direction.items()):
        label = "in" if direction == "ingress" else "out"
        if len(set(numbers.values())) == 1:
            parts.append(
                f"{label} {next(iter(numbers.values()))} in {len(numbers)} NACL{'s' if len(numbers) > 1 else ''}"
            )
        else:
            parts.append(" ".join(f"{label} {nacl[-5:]}:{n}" for nacl, n in sorted(numbers.items())))
    return ", ".join(parts) or "-"


def _held(block: BlockView) -> str:
    """Where the block is held: its NACL rules (``_rules``) and its WAF IP set, ``WAF <name>``."""
    parts = [_rules(block)] if "nacl" in block.targets else []
    if block.waf is not None:
        parts.append(f"WAF {block.waf.ip_set}")
    return ", ".join(parts) or "-"


def render(stack: Stack, shot: Snapshot) -> Group:
    with_waf = bool(shot.waf_sets) or any(b.waf is not None for b in shot.blocks)
    blocks = Table(title=f"{len(shot.blocks)} live block(s)", title_justify="left", expand=True)
    for column in ("address", "direction", "state", "held in" if with_waf else "rule", "time left", "source", "reason"):
        blocks.add_column(column, overflow="fold", no_wrap=column in ("address", "time left"))
    for block in shot.blocks:
        blocks.add_row(
            block.ip,
            block.direction,
            block.state,
            _held(block) if with_waf else _rules(block),
            _left(block.expires_at, shot.taken_at),
            block.source[:20],
            block.reason,
        )
    end = stack.rule_start + stack.rule_limit - 1
    ranges = Table(title=f"managed range: rules {stack.rule_start}-{end}", title_justify="left")
    for column in ("NACL", "direction", "entries", "free"):
        ranges.add_column(column)
    for (nacl_id, direction), used in sorted(shot.used.items()):
        ranges.add_row(nacl_id, direction, str(used), str(stack.rule_limit - used))
    parts: list[Table | Text] = [blocks, ranges]
    if shot.waf_sets:
        sets = Table(title=f"WAF IP sets ({shot.waf_scope})", title_justify="left")
        for column in ("IP set", "family", "addresses", "free"):
            sets.add_column(column, justify="left" if column in ("IP set", "family") else "right")
        for usage in shot.waf_sets:
            sets.add_row(
                usage.name, f"IPv{usage.family}", f"{usage.used:,} of {usage.limit:,}", f"{usage.limit - usage.used:,}"
            )
        parts.append(sets)
    return Group(*parts, Text("Ctrl-C stops the local stack.", style="dim"))


def changes(before: Snapshot | None, after: Snapshot, final_state: Callable[[str], Any]) -> list[str]:
    """One line per block that appeared or went away between two snapshots (the non-interactive view)."""
    old = {b.id: b for b in before.blocks} if before else {}
    new = {b.id: b for b in after.blocks}
    lines = []
    for block_id, block in new.items():
        if block_id not in old or (old[block_id].state, old[block_id].expires_at) != (block.state, block.expires_at):
            held = [f"{r.nacl_id} rule {r.rule_number} {r.direction}" for r in block.rules]
            held += [f"WAF {block.waf.ip_set}"] if block.waf is not None else []
            rules = ", ".join(held)
            lines.append(f"{block.state:8} {block.ip} until {block.expires_at} [{rules or 'no rule yet'}] {block.id}")
    for block_id, block in old.items():
        if block_id not in new:
            lines.append(f"{final_state(block_id):8} {block.ip} {block.id}")
    return lines
