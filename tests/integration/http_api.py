"""HTTP on 127.0.0.1 for tests that run the CLI: the real API (the local stack's API Gateway in
front of the real handler on the emulated stack), or canned answers for what a test must control."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from autoblock_local import apigw
from autoblock_local.emulator import load_template


@contextmanager
def serve() -> Iterator[str]:
    """The real API handler on http://127.0.0.1:<free port>, as the local stack serves it (the
    template's routes, API Gateway's proxy events); yields the base URL."""
    with _running(apigw.ApiServer(("127.0.0.1", 0), apigw.routes(load_template()))) as url:
        yield url


@contextmanager
def serve_canned(
    answers: dict[str, tuple[Any, ...] | list[tuple[Any, ...]]], seen: list[dict[str, Any]]
) -> Iterator[str]:
    """A fake API answering "METHOD /path?query" with a canned (status, JSON body[, headers]), or with each
    of a list of them in turn (the last one again after that); records each request."""

    class Canned(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else None
            seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
            canned = answers.get(
                f"{self.command} {self.path}", (404, {"error": "not_found", "message": "no such route"})
            )
            if isinstance(canned, list):
                canned = canned.pop(0) if len(canned) > 1 else canned[0]
            status, payload, *extra = canned
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

    with _running(HTTPServer(("127.0.0.1", 0), Canned)) as url:
        yield url


@contextmanager
def _running(server: HTTPServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, name="test-http-api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
