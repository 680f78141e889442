"""Tables for people (rich); --output json prints the API's own JSON instead."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from autoblock_cli.durations import format_duration

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


def rules_text(block: dict[str, Any]) -> str:
    """``acl-1 ingress #10`` per rule, one per line; "-" before the workflow has applied them."""
    rules = block.get("rules") or []
    return "\n".join(f"{r['nacl_id']} {r['direction']} #{r['rule_number']}" for r in rules) or "-"


def nacl_rules(block: dict[str, Any]) -> str:
    """``acl-1:10,11`` per NACL: the compact form for the list."""
    numbers: dict[str, list[str]] = {}
    for rule in block.get("rules") or []:
        numbers.setdefault(rule["nacl_id"], []).append(str(rule["rule_number"]))
    return "\n".join(f"{nacl}:{','.join(found)}" for nacl, found in numbers.items()) or "-"


def block_detail(console: Console, block: dict[str, Any], headline: str | None = None) -> None:
    if headline:
        console.print(headline)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    rows = [
        ("id", block.get("id")),
        ("ip", block.get("ip")),
        ("direction", block.get("direction")),
        ("state", block.get("state")),
        ("dry run", "yes" if block.get("dry_run") else None),
        ("reason", block.get("reason")),
        ("source", block.get("source")),
        ("rules", rules_text(block)),
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


WIDE = 120  # below it, `list` prints two lines a block instead of a table that would cut every column


def block_list(console: Console, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        console.print("no live blocks")
        return
    title = f"{len(blocks)} live block{'s' if len(blocks) != 1 else ''}"
    if console.width < WIDE:
        console.print(title)
        for block in blocks:
            state = f"{block.get('state', '')}{' (dry run)' if block.get('dry_run') else ''}"
            console.print(
                f"{block.get('id', '')}  {block.get('ip', '')}  {block.get('direction', '')}  {state}  "
                f"{time_left(block)} left",
                soft_wrap=True,
                highlight=False,
            )
            rules = nacl_rules(block).replace("\n", " ")
            console.print(f"    {rules}  {block.get('reason', '')}  ({block.get('source', '')})", highlight=False)
        return
    table = Table(title=title)
    for column in ("id", "address", "direction", "state", "NACL:rules", "reason", "source", "expires", "left"):
        # An address cut in two is misread; the id is what people copy.
        table.add_column(column, overflow="fold", no_wrap=column in ("id", "address", "left"))
    for block in blocks:
        state = block.get("state", "")
        table.add_row(
            block.get("id", ""),
            block.get("ip", ""),
            block.get("direction", ""),
            f"{state} (dry run)" if block.get("dry_run") else state,
            nacl_rules(block),
            block.get("reason", ""),
            block.get("source", ""),
            block.get("expires_at", ""),
            time_left(block),
        )
    console.print(table)


def _bar(taken: int, limit: int) -> str:
    share = taken / limit if limit > 0 else 1.0
    filled = round(share * BAR_WIDTH)
    return f"{'█' * filled}{'░' * (BAR_WIDTH - filled)} {share:.0%}"


def status(console: Console, answer: dict[str, Any]) -> None:
    start, limit = answer.get("rule_number_start"), answer.get("rule_limit")
    rule_range = f"{start}-{start + limit - 1}" if isinstance(start, int) and isinstance(limit, int) else "?"
    console.print(
        f"active blocks: {answer.get('active_blocks')}   rule numbers: {rule_range}   "
        f"when full: {answer.get('when_full')}   dry run: {'yes' if answer.get('dry_run') else 'no'}"
    )
    table = Table()
    for column in ("NACL", "direction", "used", "foreign", "free", "limit", "taken"):
        # A NACL id is what an operator copies: never cut.
        table.add_column(
            column,
            justify="right" if column in ("used", "foreign", "free", "limit") else "left",
            no_wrap=column in ("NACL", "taken"),
        )
    for slot in answer.get("slots") or []:
        used, foreign, limit_ = slot.get("used", 0), slot.get("foreign", 0), slot.get("limit", 0)
        table.add_row(
            slot.get("nacl_id", ""),
            slot.get("direction", ""),
            str(used),
            str(foreign),
            str(slot.get("free", "")),
            str(limit_),
            _bar(used + foreign, limit_),
        )
    console.print(table)


def history(console: Console, answer: dict[str, Any]) -> None:
    events = answer.get("events") or []
    subject = f"block {answer['block_id']} ({answer.get('ip')})" if answer.get("block_id") else str(answer.get("ip"))
    if not events:
        console.print(f"no history for {subject}")
        return
    table = Table(title=f"history of {subject}")
    for column in ("at", "event", "block", "source", "duration", "expires", "reason"):
        table.add_column(column, overflow="fold", no_wrap=column == "event")
    for event in events:
        duration = event.get("duration")
        table.add_row(
            event.get("at", ""),
            event.get("event", ""),
            event.get("block_id", ""),
            event.get("source", ""),
            format_duration(duration) if isinstance(duration, int) else "-",
            event.get("expires_at") or "-",
            event.get("reason", ""),
        )
    console.print(table)
