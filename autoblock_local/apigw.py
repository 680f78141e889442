"""API Gateway (REST, Lambda proxy) on this machine: the routes of template.yaml's Api events, served
over HTTP by the API function's real handler.

What API Gateway does before and after the Lambda is reproduced where a client can tell: an unknown
route or method answers 403 ``Missing Authentication Token``; the handler gets the REST proxy event
(path parameters, single- and multi-value headers and query strings, a request id); its answer's
status, headers and body go back as they are.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
import json
import queue
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from autoblock_local.emulator import ACCOUNT, FakeLambdaContext

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit; the handler applies its own, smaller one
STAGE = "v1"
_copies = itertools.count()


@dataclass(frozen=True)
class Route:
    method: str
    resource: str  # as the template spells it: /blocks/{block_id}
    pattern: re.Pattern[str]
    function: str  # the template's logical id of the function behind it
    handler: str  # module.attribute

    @classmethod
    def of(cls, method: str, resource: str, function: str, handler: str) -> Route:
        regex = re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(resource))
        return cls(method.upper(), resource, re.compile(f"^{regex}$"), function, handler)


def routes(template: dict[str, Any]) -> list[Route]:
    """Every Api event of every function in the template."""
    found = []
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for spec in resource["Properties"].get("Events", {}).values():
            if spec["Type"] == "Api":
                props = spec["Properties"]
                found.append(Route.of(props["Method"], props["Path"], name, resource["Properties"]["Handler"]))
    return found


def fresh_module(module_name: str) -> ModuleType:
    """A separate copy of a handler module: its own resolver, as a separate Lambda environment has.

    Powertools' resolver keeps the current request on the instance (one request per Lambda
    environment at a time), so concurrent requests in one process each need their own copy.
    """
    spec = importlib.util.find_spec(module_name)
    assert spec is not None
    assert spec.origin is not None
    copy_spec = importlib.util.spec_from_file_location(f"{module_name}__copy{next(_copies)}", spec.origin)
    assert copy_spec is not None
    assert copy_spec.loader is not None
    module = importlib.util.module_from_spec(copy_spec)
    sys.modules[copy_spec.name] = module  # as an import would: dataclasses look their module up there
    copy_spec.loader.exec_module(module)
    return module


class Environments:
    """Warm Lambda environments of one handler: one request at a time each, more made on demand."""

    def __init__(self, handler: str) -> None:
        self.module_name, _, self.attribute = handler.rpartition(".")
        self.idle: queue.SimpleQueue[Callable[..., dict[str, Any]]] = queue.SimpleQueue()
        importlib.import_module(self.module_name)  # fail at start, not on the first request

    @contextlib.contextmanager
    def take(self) -> Iterator[Callable[..., dict[str, Any]]]:
        try:
            handler = self.idle.get_nowait()
        except queue.Empty:
            handler = getattr(fresh_module(self.module_name), self.attribute)
        try:
            yield handler
        finally:
            self.idle.put(handler)


def proxy_event(
    route: Route, match: re.Match[str], method: str, raw_path: str, headers: list[tuple[str, str]], body: str | None
) -> dict[str, Any]:
    """The REST API Lambda proxy event API Gateway would send for this request."""
    url = urlsplit(raw_path)
    query = parse_qs(url.query, keep_blank_values=True)
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value
        multi.setdefault(name, []).append(value)
    request_id = str(uuid.uuid4())
    path = unquote(url.path)
    return {
        "resource": route.resource,
        "path": path,
        "httpMethod": method,
        "headers": single or None,
        "multiValueHeaders": multi or None,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {k: unquote(v) for k, v in match.groupdict().items()} or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": route.resource,
            "httpMethod": method,
            "path": f"/{STAGE}{path}",
            "accountId": ACCOUNT,
            "stage": STAGE,
            "requestId": request_id,
            "extendedRequestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": "127.0.0.1"},
            "protocol": "HTTP/1.1",
        },
        "body": body,
        "isBase64Encoded": False,
    }


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], table: list[Route]) -> None:
        self.table = table
        self.environments = {r.handler: Environments(r.handler) for r in table}
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "autoblock-local"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the live view shows what happened; an access log line could carry a query string."""

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _gateway_error(self, status: int, message: str) -> None:
        body = json.dumps({"message": message}).encode()
        self._answer(status, {"Content-Type": "application/json", "x-amzn-ErrorType": "Gateway"}, body)

    def _serve(self) -> None:
        path = urlsplit(self.path).path
        route, match = next(
            ((r, m) for r in self.server.table if r.method == self.command and (m := r.pattern.match(unquote(path)))),
            (None, None),
        )
        if route is None or match is None:
            # API Gateway's answer to a route or method the API does not have.
            self._gateway_error(HTTPStatus.FORBIDDEN, "Missing Authentication Token")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._gateway_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request Too Long")
            return
        raw = self.rfile.read(length) if length else b""
        try:
            body = raw.decode() if raw else None
        except UnicodeDecodeError:
            self._gateway_error(HTTPStatus.BAD_REQUEST, "the body is not UTF-8")
            return
        event = proxy_event(route, match, self.command, self.path, list(self.headers.items()), body)
        with self.server.environments[route.handler].take() as handler:
            try:
                answer = handler(event, FakeLambdaContext(function_name=route.function))
            except Exception:  # noqa: BLE001 - what API Gateway answers when the function fails
                self._gateway_error(HTTPStatus.BAD_GATEWAY, "Internal server error")
                return
        headers = dict(answer.get("headers") or {})
        for name, values in (answer.get("multiValueHeaders") or {}).items():
            headers[name] = ", ".join(values)
        headers["x-amzn-RequestId"] = event["requestContext"]["requestId"]
        self._answer(int(answer["statusCode"]), headers, str(answer.get("body") or "").encode())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


def serve(table: list[Route], host: str, port: int) -> tuple[ApiServer, threading.Thread]:
    server = ApiServer((host, port), table)
    thread = threading.Thread(target=server.serve_forever, name="api", daemon=True)
    thread.start()
    return server, thread
