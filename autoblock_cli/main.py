"""The `autoblock` command. Exit codes: 0 done, 1 the API refused, 2 usage error, 3 cannot reach the API."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import quote, urlsplit

import typer
from rich.console import Console

from autoblock_cli import render
from autoblock_cli.client import Answer, ApiError, Client, Unreachable
from autoblock_cli.connection import ConfigError, Connection, NotFound, is_local, local_state, resolve
from autoblock_cli.durations import DurationError, parse_duration

if TYPE_CHECKING:
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

BLOCK_ID = re.compile(r"[0-9a-f]{32}")  # autoblock.models.BLOCK_ID_PATTERN
SHORT_ID = re.compile(r"[0-9a-f]{4,32}")  # the start of one, as git takes a commit's
EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3

app = typer.Typer(
    name="autoblock",
    help="Block attacker addresses in the VPC's Network ACLs (and AWS WAF IP sets) for a while, "
    "through the autoblock API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # a traceback's locals could show the token
    add_completion=False,
)


class Output(StrEnum):
    table = "table"
    json = "json"


class Direction(StrEnum):
    ingress = "ingress"
    egress = "egress"
    both = "both"


class Target(StrEnum):
    nacl = "nacl"
    waf = "waf"


OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table for people, json: the API's answer as it came")
]


class Options:
    """The global options, kept for the commands (the token is resolved only when a command runs)."""

    url: str | None = None
    token: str | None = None
    stack: str | None = None
    region: str | None = None
    port: int | None = None
    verbose: bool = False


OPTIONS = Options()


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def fail(message: str, code: int) -> NoReturn:
    _stderr(f"error: {message}")
    raise typer.Exit(code)


def console() -> Console:
    # API data (reasons, sources) is shown as it is: no markup, emoji codes or highlighting applied to it.
    return Console(markup=False, emoji=False, highlight=False)


@app.callback()
def options(
    url: Annotated[
        str | None, typer.Option(help="The API's URL (else AUTOBLOCK_URL, --stack, the local stack)")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="The API's bearer token (else AUTOBLOCK_TOKEN); prefer the variable", show_default=False),
    ] = None,
    stack: Annotated[
        str | None, typer.Option(help="A deployed stack's name: its ApiUrl output and token secret")
    ] = None,
    region: Annotated[str | None, typer.Option(help="The AWS region of --stack")] = None,
    port: Annotated[
        int | None, typer.Option(help="The local stack whose API is on this port, when several are running")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Say where the API is and each request")] = False,
) -> None:
    OPTIONS.url, OPTIONS.token, OPTIONS.stack, OPTIONS.region = url, token, stack, region
    OPTIONS.port, OPTIONS.verbose = port, verbose


def client() -> Client:
    try:
        connection: Connection = resolve(
            OPTIONS.url, OPTIONS.token, OPTIONS.stack, OPTIONS.region, os.environ, OPTIONS.port
        )
    except NotFound as exc:
        fail(str(exc), EXIT_UNREACHABLE)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    trace = _stderr if OPTIONS.verbose else None
    if trace:
        trace(f"API {connection.url} from {connection.origin}")
    return Client(connection, trace)


def call(method: str, path: str, body: dict[str, Any] | None = None, query: dict[str, str] | None = None) -> Answer:
    try:
        return client().request(method, path, body, query)
    except ApiError as exc:
        fail(str(exc), EXIT_REFUSED)
    except Unreachable as exc:
        fail(str(exc), EXIT_UNREACHABLE)


def emit_json(answer: Answer) -> None:
    sys.stdout.write(answer.text.rstrip("\n") + "\n")


def duration_option(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--for'") from None


@app.command()
def block(
    ip: Annotated[
        str | None,
        typer.Argument(
            metavar="IP", help="An address or CIDR: 203.0.113.7, 2001:db8::7, 198.51.100.0/28", show_default=False
        ),
    ] = None,
    for_: Annotated[
        str | None,
        typer.Option(
            "--for", help="How long: 90s, 30m, 12h, 7d, 1h30m or seconds (default: the stack's)", show_default=False
        ),
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why, in a few words")] = None,
    direction: Annotated[
        Direction | None, typer.Option(help="Traffic to deny (default: ingress; with --from-finding: the finding's)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Record the block, change no NACL or WAF set")] = False,
    target: Annotated[
        list[Target] | None,
        typer.Option(
            "--target",
            help="Where to deny it: nacl (Network ACL entries) or waf (the stack's WAF IP sets); "
            "repeat for both (default: the stack's DefaultTargets)",
            show_default=False,
        ),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="A label naming the detector, e.g. elastalert:ssh-brute-force")
    ] = None,
    wait: Annotated[
        float,
        typer.Option("--wait", min=0, metavar="SECONDS", help="How long to wait for the workflow to apply the block"),
    ] = 10.0,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Answer at once, possibly pending")] = False,
    account: Annotated[
        list[str] | None,
        typer.Option("--account", help="Organization mode: only in this member account (repeat for more)"),
    ] = None,
    region: Annotated[
        list[str] | None, typer.Option("--region", help="Organization mode: only in this Region (repeat for more)")
    ] = None,
    from_finding: Annotated[
        str | None,
        typer.Option(
            "--from-finding",
            metavar="FILE",
            help="Block the addresses a GuardDuty finding names (its JSON event or the finding; - reads stdin)",
            show_default=False,
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --from-finding: block without asking")] = False,
    output: OutputOption = Output.table,
) -> None:
    """Block an address (or extend its live block), and say what happened."""
    if no_wait:
        wait = 0.0
    targets = [t.value for t in dict.fromkeys(target or [])]  # each once, as the API wants them
    if from_finding is not None:
        if ip is not None:
            raise typer.BadParameter("give an address or --from-finding FILE, not both", param_hint="'IP'")
        if reason is not None or source is not None:
            raise typer.BadParameter(
                "the finding gives each block its reason and source", param_hint="'--reason' / '--source'"
            )
        _block_from_finding(from_finding, yes, duration_option(for_), direction, dry_run, targets, wait, output)
        return
    if ip is None:
        raise typer.BadParameter(
            "missing: the address to block (`autoblock block 203.0.113.7`), or --from-finding FILE", param_hint="'IP'"
        )
    body: dict[str, Any] = {"ip": ip}
    seconds = duration_option(for_)
    if seconds is not None:
        body["duration"] = seconds
    if reason is not None:
        body["reason"] = reason
    if direction is not None:
        body["direction"] = direction.value
    if dry_run:
        body["dry_run"] = True
    if source is not None:
        body["source"] = source
    if account:
        body["accounts"] = account
    if region:
        body["regions"] = region
    if targets:
        body["targets"] = targets
    api = client()
    try:
        answer = api.request("POST", "/blocks", body)
    except ApiError as exc:
        fail(f"refused: {exc}", EXIT_REFUSED)
    except Unreachable as exc:
        fail(str(exc), EXIT_UNREACHABLE)
    created = _created(answer)
    answer, outcome = _settled(answer, wait)
    if output is Output.json:
        emit_json(answer)
    else:
        render.block_detail(console(), answer.body, outcome.headline)
    if outcome.note:
        _stderr(outcome.note)
    rerouted = _rerouted(api, answer.body, targets, created)
    if rerouted:
        _stderr(rerouted)
    if outcome.failed:
        raise typer.Exit(EXIT_REFUSED)


POLL_SECONDS = 0.25


def _read_finding(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise typer.BadParameter(f"cannot read {path}: {reason}", param_hint="'--from-finding'") from None


def _block_from_finding(
    path: str,
    yes: bool,
    seconds: int | None,
    direction: Direction | None,
    dry_run: bool,
    targets: list[str],
    wait: float,
    output: Output,
) -> None:
    """Show the addresses a finding names, ask, then block each through the API and say what happened."""
    from autoblock_cli.finding import FindingFileError, load, plan

    try:
        offered = plan(load(_read_finding(path)), direction.value if direction else None)
    except FindingFileError as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="'--from-finding'") from None
    # stdout carries the JSON answers alone with --output json: the plan then goes to stderr
    shown = console() if output is Output.table else Console(stderr=True, markup=False, emoji=False, highlight=False)
    render.finding_plan(shown, offered)
    if not offered.offers:
        return
    if not yes:
        if path == "-":
            fail(
                "the finding came on stdin, so there is no one to ask: "
                "add --yes to block without asking (… | autoblock block --from-finding - --yes)",
                EXIT_USAGE,
            )
        count = len(offered.offers)
        try:
            confirmed = typer.confirm(f"Block {'it' if count == 1 else f'these {count}'}?", default=False, err=True)
        except typer.Abort:
            _stderr("")  # end the question's line
            fail(
                "no answer, nothing blocked; to block without asking: "
                f"autoblock block --from-finding {shlex.quote(path)} --yes",
                EXIT_USAGE,
            )
        if not confirmed:
            _stderr("nothing blocked")
            raise typer.Exit(EXIT_REFUSED)
    api = client()
    answers: list[dict[str, Any]] = []
    failed = False
    for offer in offered.offers:
        body: dict[str, Any] = {
            "ip": offer.address,
            "direction": offer.direction,
            "reason": offer.reason,
            "source": offered.source,
        }
        if seconds is not None:
            body["duration"] = seconds
        if dry_run:
            body["dry_run"] = True
        if targets:
            body["targets"] = targets
        try:
            answer = api.request("POST", "/blocks", body)
        except ApiError as exc:
            failed = True
            answers.append(
                {"address": offer.address, "direction": offer.direction, "error": exc.code, "message": exc.message}
            )
            if output is Output.table:
                console().print(f"refused: {offer.address} {offer.direction}: {exc}")
            continue
        except Unreachable as exc:
            fail(str(exc), EXIT_UNREACHABLE)
        created = _created(answer)
        answer, outcome = _settled(answer, wait)
        failed = failed or outcome.failed
        rerouted = _rerouted(api, answer.body, targets, created)
        answers.append({"address": offer.address, "direction": offer.direction, "block": answer.body})
        if output is Output.table:
            short = render.short_id(str(answer.body.get("id", "")))
            console().print(f"{outcome.headline} {offer.direction} (block {short})")
        if outcome.note:
            _stderr(outcome.note)
        if rerouted:
            _stderr(rerouted)
    if output is Output.json:
        sys.stdout.write(json.dumps({"finding_id": offered.finding_id, "results": answers}) + "\n")
    if failed:
        raise typer.Exit(EXIT_REFUSED)


def _settled(answer: Answer, wait: float) -> tuple[Answer, Outcome]:
    """POST /blocks's answer once the workflow has applied it (up to ``wait`` seconds), and what it says."""
    created = _created(answer)
    if answer.body.get("state") == "pending" and wait > 0:
        answer = _wait_while_pending(answer, wait)
    return answer, _outcome(answer.body, created)


def _created(answer: Answer) -> bool:
    """POST /blocks made a new block (202), rather than extending the address's live one (200)."""
    return answer.status == 202


def _wait_while_pending(answer: Answer, seconds: float) -> Answer:
    """GET /blocks/{id} until the workflow has moved the block on from pending, or ``seconds`` pass."""
    block_id = str(answer.body.get("id", ""))
    deadline = time.monotonic() + seconds
    while answer.body.get("state") == "pending" and time.monotonic() < deadline:
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        answer = call("GET", f"/blocks/{quote(block_id)}")
    return answer


@dataclass(frozen=True)
class Outcome:
    headline: str  # what happened, first line of the table output
    note: str | None = None  # on stderr
    failed: bool = False  # exit 1


def _outcome(block: dict[str, Any], created: bool) -> Outcome:
    ip, state, reason = block.get("ip"), block.get("state"), block.get("end_reason") or ""
    if state == "dry-run":
        return Outcome(f"dry run: {ip}: {reason or 'nothing was written to any NACL'}")
    if state in ("rejected", "failed"):
        return Outcome(f"{state}: {ip}", f"error: the block was {state}: {reason or 'no reason given'}", failed=True)
    if state == "pending":
        short = render.short_id(str(block.get("id", "")))
        return Outcome(
            f"pending: {ip}",
            f"the workflow has not applied it yet: `autoblock show {short}` tells when it has",
        )
    if not created:
        return Outcome(f"extended the live block: {ip}")
    if state == "active":
        evicted = [f"{e.get('ip')} (block {render.short_id(str(e.get('id', '')))})" for e in block.get("evicted") or []]
        # Organization mode: accounts and Regions it could not be applied in (the others are blocked).
        missing = [f"{f.get('account')} {f.get('region')}" for f in block.get("failures") or []]
        note = f"warning: not blocked in {', '.join(missing)} (see 'not blocked in')" if missing else None
        if evicted:
            return Outcome(f"created: {ip}, evicting {', '.join(evicted)} to make room", note)
        return Outcome(f"created: {ip}", note)
    return Outcome(f"{state}: {ip}")


def _rerouted(api: Client, block: dict[str, Any], asked: list[str], created: bool) -> str | None:
    """What to say when a block that could have gone in the NACLs is held in WAF only: its
    ``rerouted`` event's reason (WhenFull=waf and a full rule number range). Asked for at most once a
    block, and only when the answer cannot tell a reroute from DefaultTargets=waf."""
    if (
        not created
        or asked == ["waf"]
        or block.get("targets") != ["waf"]
        or not BLOCK_ID.fullmatch(str(block.get("id")))
    ):
        return None
    try:
        events = api.request("GET", f"/blocks/{block['id']}/history").body.get("events") or []
    except (ApiError, Unreachable):
        return None  # the block is made; only why it is in WAF alone is unknown
    reasons = [str(e.get("reason", "")) for e in events if e.get("event") == "rerouted"]
    return f"note: held in WAF only: {reasons[0]}" if reasons else None


@app.command("list")
def list_(output: OutputOption = Output.table) -> None:
    """List the live blocks."""
    answer = call("GET", "/blocks")
    if output is Output.json:
        emit_json(answer)
        return
    render.block_list(console(), answer.body.get("blocks", []))


def _block_id(text: str) -> str:
    """A whole block id, or the unique live block whose id starts with ``text`` (4 hex characters or more)."""
    if BLOCK_ID.fullmatch(text):
        return text
    if not SHORT_ID.fullmatch(text):
        raise typer.BadParameter(
            f"'{text}' is not a block id (32 lowercase hex characters, or the first 4 or more of them)",
            param_hint="'ID'",
        )
    blocks = call("GET", "/blocks").body.get("blocks", [])
    matches = sorted({str(b["id"]) for b in blocks if str(b.get("id", "")).startswith(text)})
    if len(matches) > 1:
        fail(f"{text} is the start of {len(matches)} block ids: {', '.join(matches)}; give more of it", EXIT_USAGE)
    if not matches:
        fail(
            f"no live block's id starts with {text}; an ended block needs its whole id "
            "(`autoblock history ADDRESS` lists them)",
            EXIT_REFUSED,
        )
    return matches[0]


@app.command()
def show(
    block_id: Annotated[str, typer.Argument(metavar="ID", help="The block's id, or its first characters")],
    output: OutputOption = Output.table,
) -> None:
    """Show one block, live or ended."""
    answer = call("GET", f"/blocks/{_block_id(block_id)}")
    if output is Output.json:
        emit_json(answer)
        return
    render.block_detail(console(), answer.body)


def _looks_like_short_id(text: str) -> bool:
    """Hex, 4 to 31 characters, and not an address (``abcd`` or ``2001`` alone is never an address;
    an IPv6 address has colons)."""
    return bool(SHORT_ID.fullmatch(text))


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise typer.BadParameter(f"'{text}' is not a block id, an address or a CIDR ({exc})") from None


@app.command()
def unblock(
    target: Annotated[
        str, typer.Argument(metavar="ID|ADDRESS", help="A block id (or its first characters), or the address it blocks")
    ],
    output: OutputOption = Output.table,
) -> None:
    """Remove a block now: by id, or by the address or CIDR of its live block."""
    if BLOCK_ID.fullmatch(target) or _looks_like_short_id(target):
        block_id = _block_id(target)
    else:
        network = _network(target)
        blocks = call("GET", "/blocks").body.get("blocks", [])
        matches = [b["id"] for b in blocks if _same_network(b.get("ip"), network)]
        if not matches:
            fail(f"no live block of {network.compressed}", EXIT_REFUSED)
        block_id = matches[0]  # the API keeps one live block per address
    answer = call("DELETE", f"/blocks/{block_id}")
    if output is Output.json:
        emit_json(answer)
        return
    render.block_detail(console(), answer.body, f"{answer.body.get('state')}: {answer.body.get('ip')}")


def _same_network(text: Any, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_network(str(text)) == network
    except ValueError:
        return False


@app.command()
def status(output: OutputOption = Output.table) -> None:
    """Rule numbers used and free per NACL and direction, each WAF IP set's fill, and the stack's settings."""
    answer = call("GET", "/status")
    if output is Output.json:
        emit_json(answer)
        return
    render.status(console(), answer.body)


@app.command()
def history(
    target: Annotated[
        str, typer.Argument(metavar="ADDRESS|ID", help="An address or CIDR, or a block id (or its first characters)")
    ],
    output: OutputOption = Output.table,
) -> None:
    """What happened to an address, or to one block, oldest first."""
    if BLOCK_ID.fullmatch(target) or _looks_like_short_id(target):
        answer = call("GET", f"/blocks/{quote(_block_id(target))}/history")
    else:
        _network_loose(target)
        answer = call("GET", "/history", query={"ip": target})
    if output is Output.json:
        emit_json(answer)
        return
    render.history(console(), answer.body)


def _network_loose(text: str) -> None:
    """An address or CIDR at all (the API normalises it and says what is wrong with a near miss)."""
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a block id, an address or a CIDR") from None


def put_events_entry(event: Any) -> PutEventsRequestEntryTypeDef:
    """A whole EventBridge event (as in events/guardduty_*.json) as a PutEvents entry."""
    if not isinstance(event, dict):
        raise ValueError("not a JSON object")
    missing = [name for name in ("source", "detail-type", "detail") if name not in event]
    if missing:
        raise ValueError(f"the event has no {', '.join(missing)}")
    entry: PutEventsRequestEntryTypeDef = {
        "Source": str(event["source"]),
        "DetailType": str(event["detail-type"]),
        "Detail": json.dumps(event["detail"]),
    }
    if isinstance(event.get("resources"), list):
        entry["Resources"] = [str(r) for r in event["resources"]]
    if event.get("time"):
        entry["Time"] = datetime.fromisoformat(str(event["time"]))
    return entry


@app.command("send-event")
def send_event(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A whole EventBridge event as JSON")
    ],
    wait: Annotated[
        float,
        typer.Option(
            "--wait", min=0, metavar="SECONDS", help="How long to wait for a GuardDuty finding's blocks (0: not at all)"
        ),
    ] = 10.0,
    output: OutputOption = Output.table,
) -> None:
    """Put an EventBridge event (e.g. a GuardDuty finding) on the local stack's emulated AWS."""
    try:
        event = json.loads(file.read_text())
        entry = put_events_entry(event)
    except ValueError as exc:
        raise typer.BadParameter(f"{file}: {exc}") from None
    try:
        state = local_state(os.environ, OPTIONS.port)
    except NotFound as exc:
        fail(str(exc), EXIT_UNREACHABLE)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    endpoint = state.get("aws_endpoint")
    if not isinstance(endpoint, str) or not is_local(endpoint):
        # Dummy credentials go to the emulator on this machine, and nowhere else.
        fail(f"the local stack's aws_endpoint ({endpoint!r}) is not on this machine", EXIT_USAGE)
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    events = boto3.session.Session().client(
        "events",
        endpoint_url=endpoint,
        region_name=str(state.get("region") or "us-east-1"),
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 (the emulator's dummy credentials)
        aws_session_token=None,
    )
    if OPTIONS.verbose:
        _stderr(f"PutEvents {entry['Source']} / {entry['DetailType']} to {endpoint}")
    try:
        answer = events.put_events(Entries=[entry])
    except ClientError as exc:
        fail(f"PutEvents: {exc.response.get('Error', {}).get('Message', exc)}", EXIT_REFUSED)
    except BotoCoreError as exc:
        origin = urlsplit(endpoint)
        fail(f"cannot reach {origin.scheme}://{origin.netloc}: {exc}", EXIT_UNREACHABLE)
    result: dict[str, Any] = {
        "FailedEntryCount": answer.get("FailedEntryCount", 0),
        "Entries": answer.get("Entries", []),
    }
    if output is Output.json:
        sys.stdout.write(json.dumps(result) + "\n")
    failed = [e for e in result["Entries"] if e.get("ErrorCode")]
    if result["FailedEntryCount"] or failed:
        first = failed[0] if failed else {}
        fail(
            f"the event was not accepted: {first.get('ErrorCode', '?')}: {first.get('ErrorMessage', '')}", EXIT_REFUSED
        )
    if output is Output.table:
        console().print(f"sent: event id {result['Entries'][0].get('EventId')}")
        finding = event.get("detail", {}).get("id") if event.get("source") == "aws.guardduty" else None
        if isinstance(finding, str) and wait > 0:
            _show_blocks_of_finding(state, finding, wait)


def _show_blocks_of_finding(state: dict[str, Any], finding: str, seconds: float) -> None:
    """The finding's blocks once the template's rule and the workflow have made and applied them."""
    api = Client(Connection(state["url"], state["token"], "local stack"), _stderr if OPTIONS.verbose else None)
    source = f"guardduty:{finding}"
    deadline = time.monotonic() + seconds
    while True:
        try:
            blocks = api.request("GET", "/blocks").body.get("blocks", [])
        except (ApiError, Unreachable) as exc:  # the event is sent; only what it made is unknown
            _stderr(f"the finding's blocks cannot be listed: {exc}")
            return
        mine = [b for b in blocks if b.get("source") == source]
        if (mine and all(b.get("state") != "pending" for b in mine)) or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    if not mine:
        _stderr(
            f"no block from finding {finding} within {seconds:g} s: it may name nothing to block, or an address "
            "already blocked (its block was extended); the local stack's log says which"
        )
        return
    for block in mine:
        console().print(
            f"{block.get('state')}: {block.get('ip')} {block.get('direction')} "
            f"(block {render.short_id(str(block.get('id', '')))}, {render.time_left(block)} left)"
        )


@app.command("env")
def env_(
    aws: Annotated[
        bool, typer.Option("--aws", help="Also AWS's variables for the emulator: dummy keys, region, endpoint")
    ] = False,
) -> None:
    """Shell exports for the running local stack: eval "$(uv run autoblock env)" (prints its token)."""
    try:
        state = local_state(os.environ, OPTIONS.port)
    except NotFound as exc:
        fail(str(exc), EXIT_UNREACHABLE)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    lines = [f"export AUTOBLOCK_URL={shlex.quote(state['url'])} AUTOBLOCK_TOKEN={shlex.quote(state['token'])}"]
    endpoint = state.get("aws_endpoint")
    if aws:
        if not isinstance(endpoint, str) or not is_local(endpoint):
            fail(f"the local stack's aws_endpoint ({endpoint!r}) is not on this machine", EXIT_USAGE)
        region = str(state.get("region") or "us-east-1")
        lines += [
            "unset AWS_PROFILE AWS_SESSION_TOKEN",  # the emulator's dummy keys, not a profile's
            "export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
            f"AWS_DEFAULT_REGION={shlex.quote(region)} AWS_ENDPOINT_URL={shlex.quote(endpoint)}",
        ]
    sys.stdout.write("\n".join(lines) + "\n")


def main() -> None:
    app()
