"""The API handler called in-process with an events/ fixture (the ones ``sam local invoke -e`` takes),
as API Gateway would call it: the integration tests and the benchmark send their requests this way."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

from autoblock.handlers import api
from autoblock_local.apigw import fresh_module
from autoblock_local.emulator import EVENTS, TOKEN, FakeLambdaContext, wait_until

UNSET: Any = object()


def event(name: str) -> dict[str, Any]:
    fixture: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return fixture


def call(
    name: str,
    token: str | None,
    body: Any = UNSET,
    block_id: str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    handler: Callable[..., dict[str, Any]] | None = None,
) -> tuple[int, Any]:
    """Send the fixture ``name`` (with the given changes) to the API handler; (status, JSON body)."""
    request = copy.deepcopy(event(name))
    request["headers"].pop("Authorization", None)
    if token is not None:
        request["headers"]["Authorization"] = f"Bearer {token}"
    request["headers"].update(headers or {})
    request["multiValueHeaders"] = {k: [v] for k, v in request["headers"].items()}
    if body is not UNSET:
        request["body"] = body if isinstance(body, str) or body is None else json.dumps(body)
    if block_id is not None:
        request["pathParameters"] = {"block_id": block_id}
        rest = "/".join(request["path"].split("/")[3:])  # /blocks/<id>/history keeps its tail
        request["path"] = f"/blocks/{block_id}" + (f"/{rest}" if rest else "")
    if query is not None:
        request["queryStringParameters"] = query
        request["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    answer = (handler or api.lambda_handler)(request, FakeLambdaContext())
    text = answer.get("body") or "null"
    return answer["statusCode"], json.loads(text)


def isolated_api() -> ModuleType:
    """A separate copy of the API module: its own resolver, as a separate Lambda environment has."""
    return fresh_module("autoblock.handlers.api")


def settled(block_id: str, timeout: float = 20) -> dict[str, Any]:
    """The block as GET /blocks/{id} shows it once its workflow has applied or refused it (POST
    answers at once with the block pending): what a client polling the API sees."""

    def shown() -> dict[str, Any] | None:
        status, body = call("api_get_block.json", TOKEN, block_id=block_id)
        assert status == 200, body
        return body if body["state"] not in ("pending", "releasing") else None

    return dict(wait_until(shown, timeout, f"block {block_id} still pending"))
