"""The API handler served over HTTP on 127.0.0.1, for tests that run the CLI against it.

Each HTTP request becomes an API Gateway REST proxy event (the shape of events/api_*.json) for the
real handler on the emulated stack; its statusCode, headers and body become the HTTP answer. Test-only:
one request at a time, on its own copy of the API module (Powertools' resolver is not thread-safe).
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from autoblock_local.emulator import FakeLambdaContext
from tests.integration.api import event, isolated_api

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def proxy_event(method: str, target: str, headers: dict[str, str], body: str | None) -> dict[str, Any]:
    """The API Gateway REST proxy event for one HTTP request."""
    request = copy.deepcopy(event("api_create_block.json"))
    parts = urlsplit(target)
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) >= 2 and segments[0] == "blocks":
        resource = "/blocks/{block_id}" + "".join(f"/{s}" for s in segments[2:])
        path_parameters: dict[str, str] | None = {"block_id": segments[1]}
    else:
        resource, path_parameters = parts.path, None
    query = dict(parse_qsl(parts.query, keep_blank_values=True)) or None
    request_id = str(uuid.uuid4())
    request.update(
        httpMethod=method,
        path=parts.path,
        resource=resource,
        pathParameters=path_parameters,
        headers=headers,
        multiValueHeaders={k: [v] for k, v in headers.items()},
        queryStringParameters=query,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None,
        body=body,
    )
    request["requestContext"].update(
        httpMethod=method, resourcePath=resource, path=f"/v1{parts.path}", requestId=request_id
    )
    return request


class _Forward(BaseHTTPRequestHandler):
    handler: Handler

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else None
        answer = self.handler(
            proxy_event(self.command, self.path, dict(self.headers.items()), body), FakeLambdaContext()
        )
        self.send_response(answer["statusCode"])
        for name, value in (answer.get("headers") or {}).items():
            self.send_header(name, value)
        text = (answer.get("body") or "").encode()
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    do_GET = do_POST = do_DELETE = _forward

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


@contextmanager
def serve() -> Iterator[str]:
    """The real API handler on http://127.0.0.1:<free port>; yields the base URL."""
    api = isolated_api()
    forward = type("Forward", (_Forward,), {"handler": staticmethod(api.lambda_handler)})
    with _running(forward) as url:
        yield url


@contextmanager
def serve_canned(answers: dict[str, tuple[Any, ...]], seen: list[dict[str, Any]]) -> Iterator[str]:
    """A fake API answering "METHOD /path?query" with a canned (status, JSON body[, headers]); records each request."""

    class Canned(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else None
            seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
            status, payload, *extra = answers.get(
                f"{self.command} {self.path}", (404, {"error": "not_found", "message": "no such route"})
            )
            text = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in (extra[0] if extra else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            return

    with _running(Canned) as url:
        yield url


@contextmanager
def _running(handler_class: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), handler_class)
    thread = threading.Thread(target=server.serve_forever, name="test-http-api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
