"""``autoblock-local`` (``make local``): the whole of autoblock on emulated AWS, on this machine.

template.yaml's resources are created on moto (tables, the token secret, the functions with their
environment, the state machine from the real ASL file) in a demo VPC whose NACLs already hold an
allow-all rule. The real handlers run every Lambda; moto's Step Functions interpreter runs the ASL;
the API of the template's Api events is served on 127.0.0.1; the template's EventBridge rules route
events put on the emulated endpoint; its schedules tick. No AWS account, credentials or Docker: every
AWS call goes to the emulator, never to AWS.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from autoblock_local import state as statefile

if TYPE_CHECKING:  # the emulator imports boto3 and moto: only after _isolate
    from autoblock_local.emulator import WafSet

DEMO_RULES: list[dict[str, Any]] = [  # what a VPC's NACL usually holds already: allow all, in and out
    {"RuleNumber": 100, "Protocol": "-1", "RuleAction": "allow", "Egress": False, "CidrBlock": "0.0.0.0/0"},
    {"RuleNumber": 100, "Protocol": "-1", "RuleAction": "allow", "Egress": True, "CidrBlock": "0.0.0.0/0"},
]
STACK_NAME = "autoblock"
ROOT = Path(__file__).resolve().parents[1]  # the repository: the hints' working directory
# Set for the handlers by the local stack itself, whatever the template's environment says.
LOCAL_ENVIRONMENT = {
    "TZ": "UTC",  # moto's Wait compares timestamps against the local clock
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
    "POWERTOOLS_METRICS_DISABLED": "true",  # EMF lines are for CloudWatch; `autoblock status` shows the figures
}
NEVER_INHERITED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE")


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="autoblock-local",
        description="Run autoblock on emulated AWS on this machine: no AWS account, no Docker.",
    )
    parser.add_argument("--port", type=int, default=3000, help="the API's port on 127.0.0.1 (default 3000)")
    parser.add_argument(
        "--aws-port", type=int, default=3001, help="the emulated AWS endpoint's port on 127.0.0.1 (default 3001)"
    )
    parser.add_argument("--rule-limit", type=int, help="the NACLs' RuleLimit (template parameter RuleLimit)")
    parser.add_argument("--nacls", type=int, default=2, choices=range(1, 6), help="demo NACLs to block in (1-5)")
    parser.add_argument(
        "--accounts",
        type=int,
        default=0,
        choices=range(0, 6),
        help="organization mode: emulated member accounts (0-5), each with a NACL in us-east-1 and eu-west-1",
    )
    parser.add_argument(
        "--parameter-overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="template.yaml parameters, as sam spells them: 'WhenFull=evict-soonest-expiring DefaultDurationSeconds=600'",
    )
    parser.add_argument(
        "--sweep-every", type=float, help="seconds between sweeps (default: the template's schedule, 1 minute)"
    )
    parser.add_argument("--no-view", action="store_true", help="print a line per change instead of the live view")
    parser.add_argument("--log-level", default="INFO", help="the handlers' log level in the log file (default INFO)")
    return parser.parse_args(argv)


def hints(port: int, endpoint: str, waf_sets: Sequence[WafSet] = ()) -> list[str]:
    """Commands to paste into a new shell in the repository: each carries what it needs (the stack's
    port, the emulator's dummy credentials; curl takes the URL and token from `autoblock env`, so the
    token is printed once) rather than relying on an export made elsewhere. With WAF on, the first
    IP set's addresses as the AWS CLI shows them."""
    from autoblock_local.emulator import REGION

    cli = f"uv run autoblock --port {port}"
    credentials = f"AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={REGION}"
    waf = [
        f"{credentials} aws wafv2 get-ip-set --scope {s.scope} --name {s.name} --id {s.id} "
        f"--endpoint-url {endpoint} --region {s.region}"
        for s in waf_sets[:1]
    ]
    return [
        f"{cli} block 203.0.113.9 --for 2m --reason 'a first try'",
        f'eval "$({cli} env)" && curl -s -H "Authorization: Bearer $AUTOBLOCK_TOKEN" "$AUTOBLOCK_URL/blocks"',
        f"{credentials} aws ec2 describe-network-acls --endpoint-url {endpoint}",
        *waf,
        f"{cli} send-event events/guardduty_ssh_bruteforce.json",
    ]


def _metrics_disabled() -> bool:
    return os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() in ("1", "true", "yes", "on")


class LogFile(io.TextIOBase):
    """The handlers' stdout and stderr, as Lambda sends them to CloudWatch Logs: whole lines into the
    log file (each thread's lines kept apart), without the EMF metric documents when the local stack
    disables metrics (Powertools' ``single_metric`` prints them whatever POWERTOOLS_METRICS_DISABLED says)."""

    def __init__(self, file: TextIO, drop_metrics: bool) -> None:
        self._file, self._drop_metrics = file, drop_metrics
        self._pending = threading.local()
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        buffered = getattr(self._pending, "text", "") + text
        *lines, rest = buffered.split("\n")
        self._pending.text = rest
        kept = [line for line in lines if not (self._drop_metrics and _is_metric(line))]
        if kept:
            with self._lock:
                self._file.write("".join(f"{line}\n" for line in kept))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
        super().close()


def _is_metric(line: str) -> bool:
    if not line.startswith("{") or '"_aws"' not in line:
        return False
    try:
        document = json.loads(line)
    except ValueError:
        return False
    return isinstance(document, dict) and isinstance(document.get("_aws"), dict)


class _NotHandledYet(logging.Filter):
    """Records that no logger on their way to the root has written already (a Powertools logger
    writes its own service's records; its children propagate to it). A NullHandler writes nothing:
    logging puts one on ``py.warnings`` when it captures warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        current: logging.Logger | None = logging.getLogger(record.name)
        while current is not None and current is not logging.root:
            if any(not isinstance(h, logging.NullHandler) for h in current.handlers):
                return False
            if not current.propagate:
                return True
            current = current.parent
        return True


def route_logs(log: LogFile, terminal: tuple[TextIO, ...]) -> None:
    """Every log record ends up in the log file and none on the terminal: the Powertools loggers
    write there already (their stream is stdout, which is the log file); a logger created before
    the service name was known (``service_undefined`` and its children) or a library's logger
    propagates to the root, whose handler writes it there too; a handler already bound to the
    terminal's streams is pointed at the log file; warnings become log records."""
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    root = logging.getLogger()
    if not any(isinstance(h, _RootFile) for h in root.handlers):
        to_file = _RootFile(log)
        to_file.setFormatter(LambdaPowertoolsFormatter())
        to_file.addFilter(_NotHandledYet())
        root.addHandler(to_file)
    level = os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO").upper()
    for name in ("service_undefined", os.environ.get("POWERTOOLS_SERVICE_NAME") or "service_undefined"):
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(level)
    loggers = [root, *(x for x in logging.root.manager.loggerDict.values() if isinstance(x, logging.Logger))]
    for each in loggers:
        for handler in each.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in terminal:
                handler.setStream(log)
    logging.captureWarnings(True)


class _RootFile(logging.StreamHandler):  # type: ignore[type-arg]
    """The root logger's handler: the local stack's log file.

    A Powertools Logger adds a filter to every root handler that drops its service's records, by a
    substring of the logger's name; a child logger made before the service name was set is called
    ``service_undefined.autoblock.logic.…`` and would be dropped too. _NotHandledYet does that job
    exactly, so those filters are not taken."""

    def addFilter(self, filter: Any) -> None:
        from aws_lambda_powertools.logging.filters import SuppressFilter

        if not isinstance(filter, SuppressFilter):
            super().addFilter(filter)


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port now."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _isolate(log_level: str) -> None:
    """Before any boto3 client or Powertools object exists: emulated AWS only."""
    for name in NEVER_INHERITED:
        os.environ.pop(name, None)
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_")]:
        os.environ.pop(name)
    os.environ.update({**LOCAL_ENVIRONMENT, "POWERTOOLS_LOG_LEVEL": log_level.upper()})
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull  # never the user's credentials
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    time.tzset()


def _seconds(schedule: str) -> float:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|second|seconds)\)", schedule)
    if not match:
        raise SystemExit(f"autoblock-local: cannot emulate the schedule {schedule!r}")
    unit = {"s": 1, "m": 60, "h": 3600}[match.group(2)[0]]
    return int(match.group(1)) * unit


@dataclass
class Running:
    """Everything started, for the view and for a clean stop."""

    stop: threading.Event
    threads: list[threading.Thread]
    errors: list[str]


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    for port in {args.port, args.aws_port}:
        if not port_is_free(port):
            print(
                f"autoblock-local: port {port} on 127.0.0.1 is in use (choose another with --port/--aws-port)",
                file=sys.stderr,
            )
            return 2
    if args.port == args.aws_port:
        print("autoblock-local: --port and --aws-port must differ", file=sys.stderr)
        return 2
    _isolate(args.log_level)
    warnings.filterwarnings("ignore", "No application metrics to publish")
    # The handlers log (JSON) and print their metrics (EMF) to stdout, as in Lambda; here they go to a
    # log file beside the state file, and the terminal shows the view.
    out, err = sys.stdout, sys.stderr
    path = statefile.path_for(args.port, os.environ)
    log_path = statefile.log_path_for(path)
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = LogFile(log_path.open("a", buffering=1), drop_metrics=_metrics_disabled())
    sys.stdout = sys.stderr = log
    route_logs(log, terminal=(out, err))

    # Imported after _isolate: Powertools and boto3 read the environment when they are first used.
    from autoblock_local import overrides
    from autoblock_local.emulator import load_template

    template = load_template()
    try:
        wanted = overrides.parse(args.parameter_overrides)
        if args.rule_limit is not None:
            wanted["RuleLimit"] = str(args.rule_limit)
        params = overrides.check(template["Parameters"], wanted)
    except overrides.OverrideError as error:
        print(f"autoblock-local: {error}", file=err)
        sys.stdout, sys.stderr = out, err
        log.close()
        return 2
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with _local_stack(args, template, params, stopping, out, path, log) as (banner, show):
            route_logs(log, terminal=(out, err))  # loggers the handlers made while they were imported
            print(banner, file=out, flush=True)
            show()
    finally:
        sys.stdout, sys.stderr = out, err
        log.close()
    print("autoblock-local: stopped; nothing is left running.", flush=True)
    return 0


@contextlib.contextmanager
def _local_stack(
    args: argparse.Namespace,
    template: dict[str, Any],
    params: dict[str, Any],
    stopping: threading.Event,
    out: TextIO,
    path: Path,
    log: LogFile,
) -> Iterator[tuple[str, Any]]:
    import boto3
    from moto.server import ThreadedMotoServer

    from autoblock_local import apigw, bus, view
    from autoblock_local.emulator import REGION, condition, deploy_stack, emulated_aws

    token = secrets.token_urlsafe(32)
    log_path = statefile.log_path_for(path)

    def setenv(key: str, value: str) -> None:
        if key not in LOCAL_ENVIRONMENT and key != "POWERTOOLS_LOG_LEVEL":
            os.environ[key] = value

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the moto server's access log
    with emulated_aws():
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.aws_port, verbose=False)
        server.start()
        api: apigw.ApiServer | None = None
        running = Running(threading.Event(), [], [])
        try:
            defaults = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
            stack = deploy_stack(
                setenv,
                args.nacls,
                members=args.accounts,
                foreign_rules=DEMO_RULES,
                token=token,
                test_defaults=False,
                **params,
            )
            effective = {**defaults, **params}
            refs = {**effective, "AWS::StackName": STACK_NAME, "AWS::Region": REGION}
            for name, node in template.get("Conditions", {}).items():
                refs[f"Condition:{name}"] = condition(node, refs)

            sfn = boto3.client("stepfunctions", region_name=REGION)
            lam = boto3.client("lambda", region_name=REGION)
            routed = bus.install(bus.rules(template, refs))
            for rule in routed:
                if rule.target != "BlockStateMachine":
                    raise SystemExit(f"autoblock-local: cannot emulate a rule targeting {rule.target}")

            def start(rule: bus.Rule, event: dict[str, Any]) -> None:
                try:
                    sfn.start_execution(
                        stateMachineArn=stack.state_machine_arn, name=str(event["id"]), input=json.dumps(event)
                    )
                except Exception as error:  # noqa: BLE001 - shown, and the poller goes on
                    running.errors.append(f"rule {rule.name}: {error}")

            running.threads.append(
                threading.Thread(target=bus.deliver_forever, args=(routed, start, running.stop), name="events")
            )
            for name, seconds in _schedules(template):
                every = args.sweep_every or seconds
                running.threads.append(
                    threading.Thread(
                        target=_tick, args=(lam, name, every, running), name=f"schedule-{name}", daemon=True
                    )
                )
            for thread in running.threads:
                thread.start()
            api, _ = apigw.serve(apigw.routes(template), "127.0.0.1", args.port)

            url = f"http://127.0.0.1:{args.port}"
            endpoint = f"http://127.0.0.1:{args.aws_port}"
            statefile.write(
                path,
                {
                    "url": url,
                    "port": args.port,
                    "token": token,
                    "aws_endpoint": endpoint,
                    "region": REGION,
                    "log": str(log_path),
                    "pid": os.getpid(),
                },
            )
            end = stack.rule_start + stack.rule_limit - 1
            banner = "\n".join(
                [
                    "autoblock local stack: template.yaml on emulated AWS (moto); no AWS account is used.",
                    f"  API           {url}",
                    f"  token         {token}",
                    f"  AWS endpoint  {endpoint}  (region {REGION}, any credentials, e.g. testing/testing)",
                    f"  NACLs         {', '.join(stack.nacl_ids)}  (rules {stack.rule_start}-{end} are autoblock's)",
                    *(
                        [
                            f"  members       {', '.join(m.account for m in stack.members)}: a NACL each in "
                            f"{', '.join(sorted(stack.members[0].nacls))} (MemberNetworkAclIds)"
                        ]
                        if stack.members
                        else []
                    ),
                    *(
                        [
                            f"  WAF IP sets   {', '.join(s.name for s in stack.waf_sets)}  "
                            f"({stack.waf_sets[0].scope}, {stack.waf_sets[0].region})"
                        ]
                        if stack.waf_sets
                        else []
                    ),
                    f"  state file    {path}  (the autoblock CLI reads the URL and token from it)",
                    f"  handler logs  {log_path}",
                    "",
                    f"Try, in {ROOT} (each line works as it is, in a new shell):",
                    *(f"  {hint}" for hint in hints(args.port, endpoint, stack.waf_sets)),
                    "ready",
                ]
            )

            def show() -> None:
                _watch(stack, view, stopping, running, out, interactive=out.isatty() and not args.no_view)

            yield banner, show
        finally:
            running.stop.set()
            if api is not None:
                api.shutdown()
                api.server_close()
            for thread in running.threads:
                thread.join(timeout=5)
            server.stop()
            statefile.remove(path, os.getpid())  # this stack's own file only


def _schedules(template: dict[str, Any]) -> list[tuple[str, float]]:
    return [
        (name, _seconds(spec["Properties"]["Schedule"]))
        for name, resource in template["Resources"].items()
        for spec in resource.get("Properties", {}).get("Events", {}).values()
        if spec["Type"] == "Schedule"
    ]


def _tick(lam: Any, function: str, every: float, running: Running) -> None:
    """Invoke the function on its schedule, as EventBridge Scheduler would (through Lambda)."""
    event = json.dumps({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
    while not running.stop.wait(every):
        try:
            answer = lam.invoke(FunctionName=function, Payload=event.encode())
            if answer.get("FunctionError"):
                running.errors.append(f"{function}: {answer['Payload'].read().decode()[:300]}")
        except Exception as error:  # noqa: BLE001 - shown, and the schedule goes on
            running.errors.append(f"{function}: {error}")


def _watch(stack: Any, view: Any, stopping: threading.Event, running: Running, out: TextIO, interactive: bool) -> None:
    """Show the blocks until Ctrl-C or SIGTERM: a live table on a terminal, a line per change otherwise."""
    from autoblock.handlers import wiring

    def final_state(block_id: str) -> str:
        try:
            return str(wiring.lifecycle().get(block_id).state)
        except Exception:  # noqa: BLE001 - the view never stops the stack
            return "gone"

    if interactive:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=out)
        with Live(view.render(stack, view.snapshot(stack)), console=console, refresh_per_second=2) as live:
            while not stopping.wait(1):
                live.update(view.render(stack, view.snapshot(stack)))
                while running.errors:
                    live.console.print(f"[red]error[/red] {running.errors.pop(0)}")
        return
    before = None
    while not stopping.wait(1):
        try:
            shot = view.snapshot(stack)
        except Exception as error:  # noqa: BLE001 - the view never stops the stack
            print(f"view: {error}", file=out, flush=True)
            continue
        for line in view.changes(before, shot, final_state):
            print(line, file=out, flush=True)
        while running.errors:
            print(f"error: {running.errors.pop(0)}", file=out, flush=True)
        before = shot


if __name__ == "__main__":
    sys.exit(main())
