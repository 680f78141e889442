"""Where the API is and which token it takes, in CONTRACT.md's order:
--url/--token flags > AUTOBLOCK_URL/AUTOBLOCK_TOKEN > --stack (CloudFormation + Secrets Manager) > the local state file.

The URL and the token always come from the same place (a flag may stand in for its environment
variable): a token found for one stack is never sent to another stack's URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from autoblock_local import state

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
NO_STACK = "no local stack is running: start one with `make local`, or pass --url and --token"


class ConfigError(Exception):
    """The CLI cannot tell where the API is, or refuses the URL it was given."""


class NotFound(ConfigError):
    """Nothing says where the API is (exit code 3: there is nothing to connect to)."""


@dataclass(frozen=True)
class Connection:
    url: str
    token: str = field(repr=False)  # never in a repr, a traceback or a log line
    origin: str  # where url and token came from, for --verbose

    def __post_init__(self) -> None:
        check_transport(self.url)


def check_transport(url: str) -> None:
    """The token travels in a header: only over https, or plain http to this machine."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"'{url}' is not an http(s) URL")
    if parts.scheme == "http" and parts.hostname not in LOCAL_HOSTS:
        raise ConfigError(
            f"refusing {parts.scheme}://{parts.hostname}: the token would travel in clear text; "
            "use https (plain http is accepted for 127.0.0.1, localhost and ::1 only)"
        )


def is_local(url: str) -> bool:
    return urlsplit(url).hostname in LOCAL_HOSTS


def local_state(env: Mapping[str, str], port: int | None = None) -> dict[str, Any]:
    """The state of the running local stack: the only one, or the one on ``port``; else NotFound/ConfigError."""
    found = state.running(env)
    if port is not None:
        found = [f for f in found if f.port == port or (f.port is None and _port_of(f.state) == port)]
        if not found:
            raise NotFound(
                f"no local stack is running on port {port}: start one with `make local ARGS='--port {port}'`"
            )
    if not found:
        raise NotFound(NO_STACK)
    if len(found) > 1:
        ports = ", ".join(str(f.port or _port_of(f.state) or "?") for f in found)
        raise ConfigError(
            f"{len(found)} local stacks are running (API ports {ports}): choose one with --port PORT, "
            "or pass --url and --token"
        )
    (one,) = found
    if not isinstance(one.state.get("url"), str) or not isinstance(one.state.get("token"), str):
        raise ConfigError(f"cannot read the local stack's state file {one.path}: it has no url and token")
    return {**one.state, "state_file": str(one.path)}


def _port_of(found: dict[str, Any]) -> int | None:
    url = found.get("url")
    return urlsplit(url).port if isinstance(url, str) else None


def from_stack(name: str, region: str | None) -> Connection:
    """The deployed stack's ApiUrl output and its token from Secrets Manager, with the user's AWS credentials."""
    import boto3  # only --stack needs it: the other paths start faster without
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        session = boto3.session.Session(region_name=region)
        stacks = session.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
        outputs = {o.get("OutputKey"): o.get("OutputValue") for o in stacks[0].get("Outputs", [])}
        url, secret_arn = outputs.get("ApiUrl"), outputs.get("TokenSecretArn")
        if not url or not secret_arn:
            raise ConfigError(f"stack {name} has no ApiUrl and TokenSecretArn outputs: is it an autoblock stack?")
        token = session.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ConfigError(f"stack {name}: {error.get('Code', 'error')}: {error.get('Message', '')}") from None
    except BotoCoreError as exc:
        raise ConfigError(f"stack {name}: {exc}") from None
    return Connection(url, token, f"stack {name}")


def resolve(
    url: str | None,
    token: str | None,
    stack: str | None,
    region: str | None,
    env: Mapping[str, str],
    port: int | None = None,
) -> Connection:
    """The API to talk to, in the contract's order."""
    given_url = url or env.get("AUTOBLOCK_URL") or None
    given_token = token or env.get("AUTOBLOCK_TOKEN") or None
    if given_url and given_token:
        return Connection(given_url, given_token, "--url/--token or AUTOBLOCK_URL/AUTOBLOCK_TOKEN")
    if given_url:
        where = "--url" if url else "AUTOBLOCK_URL"
        raise ConfigError(
            f"{where} names the API but no token goes with it: add --token TOKEN or set AUTOBLOCK_TOKEN "
            "(a deployed stack's token: see README, The token)"
        )
    if given_token:
        where = "--token" if token else "AUTOBLOCK_TOKEN"
        raise ConfigError(
            f"{where} is a token for no URL: add --url URL (the API's address, e.g. "
            "https://abc123.execute-api.us-east-1.amazonaws.com/v1, the stack's ApiUrl output) "
            "or set AUTOBLOCK_URL; "
            f"for the local stack leave out {where}"
        )
    if stack:
        return from_stack(stack, region)
    found = local_state(env, port)
    return Connection(found["url"], found["token"], f"local stack ({found['state_file']})")
