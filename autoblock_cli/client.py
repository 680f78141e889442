"""The API over HTTP with the standard library: the token in the Authorization header only, no redirects."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from autoblock_cli.connection import Connection, is_local

TIMEOUT_SECONDS = 30.0  # POST /blocks waits a few seconds for the workflow to apply the block
USER_AGENT = "autoblock-cli/0.1"


class ApiError(Exception):
    """The API answered with an error (exit code 1)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status} {code})")
        self.status = status
        self.code = code
        self.message = message


class Unreachable(Exception):
    """No answer from the API (exit code 3)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # the parsed JSON
    text: str  # the body exactly as the API sent it, for --output json


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the Authorization header to wherever it points: refuse it instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _error_of(status: int, text: str) -> ApiError:
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return ApiError(status, body["error"], str(body.get("message", "")))
    if 300 <= status < 400:
        return ApiError(status, "redirect", "the API redirects elsewhere; not followed, so the token stays here")
    return ApiError(status, "http_error", f"the API answered HTTP {status}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer within {TIMEOUT_SECONDS:g} s"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__


class Client:
    def __init__(self, connection: Connection, trace: Callable[[str], None] | None = None) -> None:
        self.connection = connection
        self.base = connection.url.rstrip("/")
        self.trace = trace or (lambda _line: None)
        handlers: list[urllib.request.BaseHandler] = [_NoRedirects()]
        if is_local(connection.url):
            handlers.append(urllib.request.ProxyHandler({}))  # clear-text http: never through a proxy
        self.opener = urllib.request.build_opener(*handlers)

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, query: dict[str, str] | None = None
    ) -> Answer:
        url = self.base + path + (f"?{urlencode(query)}" if query else "")
        headers = {
            "Authorization": f"Bearer {self.connection.token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 (checked scheme)
        self.trace(f"{method} {url}")
        try:
            with self.opener.open(request, timeout=TIMEOUT_SECONDS) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            origin = urlsplit(self.base)
            raise Unreachable(f"cannot reach {origin.scheme}://{origin.netloc}: {_reason(exc)}") from None
        self.trace(f"-> HTTP {status}")
        if not 200 <= status < 300:
            raise _error_of(status, text)
        try:
            return Answer(status, json.loads(text), text)
        except ValueError:
            raise ApiError(status, "bad_response", "the API's answer is not JSON") from None
