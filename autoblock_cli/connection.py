"""Where the API is and which token it takes, in CONTRACT.md's order:
--url/--token flags > AUTOBLOCK_URL/AUTOBLOCK_TOKEN > --stack (CloudFormation + Secrets Manager) > the local state file.

The URL and the token always come from the same place (a flag may stand in for its environment
variable): a token found for one stack is never sent to another stack's URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


def state_file(env: Mapping[str, str]) -> Path:
    """$AUTOBLOCK_LOCAL_STATE, else ${XDG_STATE_HOME:-~/.local/state}/autoblock/local.json."""
    if env.get("AUTOBLOCK_LOCAL_STATE"):
        return Path(env["AUTOBLOCK_LOCAL_STATE"])
    base = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else Path.home() / ".local" / "state"
    return base / "autoblock" / "local.json"


def local_state(env: Mapping[str, str]) -> dict[str, Any]:
    """The running local stack's state file, or NotFound."""
    path = state_file(env)
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFound(NO_STACK) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the local stack's state file {path}: {type(exc).__name__}") from None
    if not isinstance(state, dict) or not isinstance(state.get("url"), str) or not isinstance(state.get("token"), str):
        raise ConfigError(f"the local stack's state file {path} has no url and token")
    return state


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
) -> Connection:
    """The API to talk to, in the contract's order."""
    given_url = url or env.get("AUTOBLOCK_URL") or None
    given_token = token or env.get("AUTOBLOCK_TOKEN") or None
    if given_url and given_token:
        return Connection(given_url, given_token, "--url/--token or AUTOBLOCK_URL/AUTOBLOCK_TOKEN")
    if given_url:
        raise ConfigError("a URL without a token: pass --token or set AUTOBLOCK_TOKEN")
    if given_token:
        raise ConfigError("a token without a URL: pass --url or set AUTOBLOCK_URL")
    if stack:
        return from_stack(stack, region)
    state = local_state(env)
    return Connection(state["url"], state["token"], f"local stack ({state_file(env)})")
