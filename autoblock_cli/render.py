"""Tables for people (rich); --output json prints the API's own JSON instead."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from autoblock_cli.durations import format_duration
from autoblock_cli.finding import Plan

LIVE = frozenset({"pending", "active", "releasing"})
BAR_WIDTH = 10


def _instant(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def time_left(block: dict[str, Any], now: datetime | None = None) -> str:
    """What is left of a live block ("expired" past its end); "-" for a block that has ended."""
    expires = _instant(block.get("expires_at"))
    if block.get("state") not in LIVE or expires is None:
        return "-"
    left = int((expires - (now or datetime.now(UTC))).total_seconds())
    return format_duration(left) if left > 0 else "expired"


def places(rules: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The distinct (account, region) of rules or slots, sorted (empty fields left out)."""
    return sorted({(str(r.get("account") or ""), str(r.get("region") or "")) for r in rules} - {("", "")})


def rules_text(block: dict[str, Any]) -> str:
    """``acl-1 ingress #10`` per rule, one per line, prefixed with its account and Region when the
    block spans several; "-" before the workflow has applied them."""
    rules = block.get("rules") or []
    several = len(places(rules)) > 1
    return (
        "\n".join(
            f"{r['account'] + ' ' + r['region'] + ' ' if several else ''}{r['nacl_id']} {r['direction']} "
            f"#{r['rule_number']}"
            for r in rules
        )
        or "-"
    )


def where(block: dict[str, Any]) -> str:
    """Where a block is: ``111122223333 eu-west-1``, or how many accounts and Regions."""
    found = places(block.get("rules") or [])
    if len(found) == 1:
        return " ".join(found[0])
    if not found:
        return "-"
    return f"{len({a for a, _ in found})} accounts, {len(found)} places"


def failures_text(block: dict[str, Any]) -> str | None:
    failures = block.get("failures") or []
    return "\n".join(f"{f['account']} {f['region']}: {f['reason']}" for f in failures) or None


def targets_of(block: dict[str, Any]) -> list[str]:
    """Where the block denies its address: ``nacl``, ``waf`` or both (an API before WAF: nacl)."""
    return [str(t) for t in block.get("targets") or ["nacl"]]


def waf_text(block: dict[str, Any]) -> str | None:
    """``autoblock-v4-1 (REGIONAL): applied``; "-" for target waf before the API names the set; None
    for a block that is not in WAF."""
    waf = block.get("waf")
    if not isinstance(waf, dict):
        return "-" if "waf" in targets_of(block) else None
    return f"{waf.get('ip_set')} ({waf.get('scope')}): {waf.get('state')}"


def block_detail(console: Console, block: dict[str, Any], headline: str | None = None) -> None:
    if headline:
        console.print(headline)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    targets = targets_of(block)
    in_waf = "waf" in targets or block.get("waf") is not None
    # A NACL-only block keeps its one "rules" row; a block in WAF shows each target on its own row.
    nacl_rows = [("NACL rules" if in_waf else "rules", rules_text(block))] if "nacl" in targets else []
    rows = [
        ("id", block.get("id")),
        ("ip", block.get("ip")),
        ("direction", block.get("direction")),
        ("state", block.get("state")),
        ("dry run", "yes" if block.get("dry_run") else None),
        ("reason", block.get("reason")),
        ("source", block.get("source")),
        ("targets", ", ".join(targets) if in_waf else None),
        *nacl_rows,
        ("WAF IP set", waf_text(block) if in_waf else None),
        ("not blocked in", failures_text(block)),
        ("created", block.get("created_at")),
        ("expires", block.get("expires_at")),
        ("time left", time_left(block)),
        ("ended", block.get("ended_at")),
        ("end reason", block.get("end_reason")),
    ]
    for key, value in rows:
        if value not in (None, ""):
            grid.add_row(key, str(value))
    console.print(grid)


SHORT_ID = 8  # as git shortens a commit: enough to tell blocks apart, accepted back by show/unblock/history
GAP = 2  # spaces between columns


def short_id(block_id: str) -> str:
    return block_id[:SHORT_ID]


def _source_width(console: Console) -> int:
    """A source label (``api:<request id>``, ``guardduty:<finding id>``) whole on a wide terminal, its start
    on a narrower one (``show`` and ``--output json`` have it whole)."""
    return 80 if console.width >= 160 else 24 if console.width >= 120 else 16


def _clip(text: str, width: int) -> str:
    return text if cell_len(text) <= width else text[: width - 1] + "…"


@dataclass
class Column:
    """A column of a table that must fit the terminal without cutting an id, an address or a time:
    every column is as wide as its widest value, except ``flexible`` ones (free text), which take
    what is left (wrapped at spaces, or cut with an ellipsis when ``one_line``). When the terminal is
    too narrow, columns with a ``drop`` rank go, lowest rank first."""

    header: str
    values: list[str]
    drop: int | None = None
    flexible: bool = False
    one_line: bool = False
    right: bool = False
    minimum: int = 12

    @property
    def width(self) -> int:
        return max(
            [cell_len(self.header), *(max((cell_len(x) for x in v.split("\n")), default=0) for v in self.values)]
        )


def fitted(console: Console, columns: list[Column], title: str | None = None) -> Table | None:
    """A table of ``columns`` within the console's width, or None when even the kept columns do not fit."""

    def needed(kept: list[Column]) -> int:
        # rich pads the last column on the right too, pad_edge or not
        return sum(min(c.width, c.minimum) if c.flexible else c.width for c in kept) + GAP * (len(kept) - 1) + 1

    kept = list(columns)
    droppable = sorted((c for c in columns if c.drop is not None), key=lambda c: c.drop or 0)
    while needed(kept) > console.width and droppable:
        kept.remove(droppable.pop(0))
    if needed(kept) > console.width:
        return None
    spare = console.width - needed(kept)  # what the flexible columns may take beyond their minimum
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, GAP - 1, 0, 0),  # and the box's blank divider: GAP spaces between columns
    )
    for column in kept:
        table.add_column(
            column.header,
            justify="right" if column.right else "left",
            no_wrap=not column.flexible or column.one_line,
            overflow="ellipsis" if column.one_line else "fold",
            min_width=None if column.flexible else column.width,
            max_width=min(column.width, column.minimum + spare) if column.flexible else None,
        )
    for row in zip(*(c.values for c in kept), strict=True):
        table.add_row(*row)
    return table


def _records(console: Console, columns: list[Column], title: str | None) -> None:
    """The last resort of a very narrow terminal: one ``header: value`` line per cell."""
    if title:
        console.print(title)
    for row in zip(*(c.values for c in columns), strict=True):
        for column, value in zip(columns, row, strict=True):
            console.print(f"{column.header}: {value}")  # wrapped between words
        console.print()


def print_table(console: Console, columns: list[Column], title: str | None = None) -> None:
    table = fitted(console, columns, title)
    if table is None:
        _records(console, columns, title)
    else:
        console.print(table)


def rule_numbers(block: dict[str, Any]) -> str:
    """The block's rule numbers, the same in most stacks across NACLs: ``10``, ``10,11``, ``in 10 out 12``."""
    by_direction: dict[str, set[int]] = {}
    for rule in block.get("rules") or []:
        by_direction.setdefault(str(rule.get("direction")), set()).add(int(rule["rule_number"]))
    if not by_direction:
        return "-"
    if len(by_direction) == 1:
        return ",".join(str(n) for n in sorted(next(iter(by_direction.values()))))
    return " ".join(
        f"{'in' if d == 'ingress' else 'out'} {','.join(str(n) for n in sorted(numbers))}"
        for d, numbers in sorted(by_direction.items(), reverse=True)
    )


WAF_SET_SUFFIX = re.compile(r"-(v[46]-[0-9]+)$")  # template.yaml names them ${AWS::StackName}-v4-1 ...


def waf_set_label(block: dict[str, Any]) -> str:
    """The block's WAF IP set by its last part (``v4-1``: the stack's name is the same for all), "-"
    when it is not in WAF (``show`` names the set in full)."""
    waf = block.get("waf")
    if not isinstance(waf, dict):
        return "-"
    name = str(waf.get("ip_set") or "")
    found = WAF_SET_SUFFIX.search(name)
    return found.group(1) if found else name or "-"


def block_list(console: Console, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        console.print("no live blocks")
        return
    # A stack with WAF: a column for each block's WAF IP set beside its NACL rule numbers.
    in_waf = any("waf" in targets_of(b) or b.get("waf") is not None for b in blocks)
    held = "NACL rules and WAF IP sets" if in_waf else "rule numbers in every NACL"
    title = f"{len(blocks)} live block{'s' if len(blocks) != 1 else ''} ({held}: autoblock show ID)"
    states = [f"{b.get('state', '')}{' (dry run)' if b.get('dry_run') else ''}" for b in blocks]
    # Organization mode: where each block is (the account and Region column appears only then).
    located = len(places([r for b in blocks for r in b.get("rules") or []])) > 1
    print_table(
        console,
        [
            Column("id", [short_id(str(b.get("id", ""))) for b in blocks]),
            Column("address", [str(b.get("ip", "")) for b in blocks]),
            *([Column("account / Region", [where(b) for b in blocks], drop=7)] if located else []),
            # with WAF, where a block is held outranks its direction (WAF denies ingress only)
            Column("direction", [str(b.get("direction", "")) for b in blocks], drop=4 if in_waf else 5),
            Column("state", states),
            Column("rule", [rule_numbers(b) for b in blocks], drop=6 if in_waf else 4),
            *([Column("WAF", [waf_set_label(b) for b in blocks], drop=5)] if in_waf else []),
            Column("left", [time_left(b) for b in blocks], right=True),
            Column("expires (UTC)", [_clock(b.get("expires_at"), False) for b in blocks], drop=1),
            Column("source", [_clip(str(b.get("source", "")), _source_width(console)) for b in blocks], drop=2),
            Column("reason", [str(b.get("reason", "")) for b in blocks], flexible=True, one_line=True, drop=3),
        ],
        title,
    )


def _of(used: int, limit: int) -> str:
    return f"{used:,} of {limit:,}"


def _bar(taken: int, limit: int) -> str:
    share = taken / limit if limit > 0 else 1.0
    filled = round(share * BAR_WIDTH)
    return f"{'█' * filled}{'░' * (BAR_WIDTH - filled)} {share:.0%}"


def _fields(console: Console, fields: list[str]) -> None:
    """``key: value`` fields on as few lines as fit, a field never split."""
    line = ""
    for field_ in fields:
        if line and cell_len(line) + 3 + cell_len(field_) > console.width:
            console.print(line, soft_wrap=True)
            line = ""
        line = f"{line}   {field_}" if line else field_
    if line:
        console.print(line, soft_wrap=True)


def status(console: Console, answer: dict[str, Any]) -> None:
    start, limit = answer.get("rule_number_start"), answer.get("rule_limit")
    rule_range = f"{start}-{start + limit - 1}" if isinstance(start, int) and isinstance(limit, int) else "?"
    _fields(
        console,
        [
            f"active blocks: {answer.get('active_blocks')}",
            f"rule numbers: {rule_range}",
            f"when full: {answer.get('when_full')}",
            f"dry run: {'yes' if answer.get('dry_run') else 'no'}",
            *([f"WAF: {answer.get('waf_scope')}"] if answer.get("waf_scope") not in (None, "NONE") else []),
        ],
    )
    slots = answer.get("slots") or []
    used = [int(s.get("used", 0)) for s in slots]
    foreign = [int(s.get("foreign", 0)) for s in slots]
    limits = [int(s.get("limit", 0)) for s in slots]
    located = len(places(slots)) > 1  # organization mode: say whose NACL each is
    print_table(
        console,
        [
            *([Column("account", [str(s.get("account", "")) for s in slots])] if located else []),
            *([Column("Region", [str(s.get("region", "")) for s in slots])] if located else []),
            Column("NACL", [str(s.get("nacl_id", "")) for s in slots]),
            Column("direction", [str(s.get("direction", "")) for s in slots]),
            Column("used", [str(n) for n in used], right=True),
            Column("foreign", [str(n) for n in foreign], right=True, drop=3),
            Column("free", [str(s.get("free", "")) for s in slots], right=True),
            Column("limit", [str(n) for n in limits], right=True, drop=2),
            Column("taken", [_bar(u + f, n) for u, f, n in zip(used, foreign, limits, strict=True)], drop=1),
        ],
    )
    waf_sets = answer.get("waf_sets") or []
    if waf_sets:
        filled = [int(w.get("used", 0)) for w in waf_sets]
        room = [int(w.get("limit", 0)) for w in waf_sets]
        console.print()
        print_table(
            console,
            [
                Column("WAF IP set", [str(w.get("name", "")) for w in waf_sets]),
                Column("family", [f"IPv{w.get('family')}" for w in waf_sets], drop=2),
                Column("addresses", [_of(u, n) for u, n in zip(filled, room, strict=True)], right=True),
                Column("taken", [_bar(u, n) for u, n in zip(filled, room, strict=True)], drop=1),
            ],
        )


def _clock(text: Any, time_only: bool) -> str:
    """A UTC instant as ``HH:MM:SS`` (when the day is said elsewhere) or ``YYYY-MM-DD HH:MM:SS``; "-" if none."""
    instant = _instant(text) if isinstance(text, str) else None
    if instant is None:
        return "-"
    return instant.strftime("%H:%M:%S" if time_only else "%Y-%m-%d %H:%M:%S")


def history(console: Console, answer: dict[str, Any]) -> None:
    events = answer.get("events") or []
    one_block = bool(answer.get("block_id"))
    subject = f"block {answer['block_id']} ({answer.get('ip')})" if one_block else str(answer.get("ip"))
    if not events:
        console.print(f"no history for {subject}")
        return
    days = {str(e.get(k))[:10] for e in events for k in ("at", "expires_at") if e.get(k)}
    same_day = len(days) == 1
    title = f"history of {subject}" + (f", {days.pop()} (UTC)" if same_day else " (UTC)")
    durations = [e.get("duration") for e in events]
    ids = [str(e.get("block_id") or "") for e in events]
    columns = [
        Column("at", [_clock(e.get("at"), same_day) for e in events]),
        Column("event", [str(e.get("event", "")) for e in events]),
        *([] if one_block else [Column("block", [short_id(i) if i else "-" for i in ids])]),
        Column("source", [_clip(str(e.get("source", "")), _source_width(console)) for e in events], drop=3),
        Column("for", [format_duration(d) if isinstance(d, int) else "" for d in durations], drop=2),
        Column("until", [_clock(e.get("expires_at"), same_day) if e.get("expires_at") else "" for e in events], drop=1),
        Column("reason", [str(e.get("reason", "")) for e in events], flexible=True, minimum=22),
    ]
    print_table(console, columns, title)
    if not one_block:
        for block_id in dict.fromkeys(i for i in ids if i):
            console.print(f"block {short_id(block_id)} = {block_id}", soft_wrap=True)


def finding_plan(console: Console, plan: Plan) -> None:
    """The addresses a finding names, and the ones left alone with why."""
    console.print(f"finding {plan.finding_id}")
    console.print(f"{plan.finding_type}, severity {plan.severity:g}")
    if plan.note:
        console.print(plan.note)
    if plan.offers:
        count = len(plan.offers)
        print_table(
            console,
            [
                Column("address", [o.address for o in plan.offers]),
                Column("direction", [o.direction for o in plan.offers]),
                Column(
                    "why",
                    [o.reason.removeprefix(f"GuardDuty {plan.finding_type}: ") for o in plan.offers],
                    flexible=True,
                    minimum=20,
                ),
            ],
            f"{count} address{'es' if count != 1 else ''} to block",
        )
    else:
        console.print("nothing to block")
    if plan.left_alone:
        print_table(
            console,
            [
                Column("left alone", [a or "-" for a, _ in plan.left_alone]),
                Column("why", [why for _, why in plan.left_alone], flexible=True, minimum=20),
            ],
        )
