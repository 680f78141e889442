"""The REST API: POST/GET /blocks, GET/DELETE /blocks/{id}, GET /blocks/{id}/history, GET /history,
GET /status, behind a bearer token.

Validation at the edge, paid for once: the body and query are checked against the same models the
OpenAPI document is generated from (``openapi_document``, at build time), by two small route
middlewares instead of Powertools' validation, whose OpenAPI machinery would be imported by every
cold start. The route signatures' ``Body``/``Path``/``Query`` annotations are read only then.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from autoblock.errors import AutoblockError, BlockNotFound, InvalidAddress, InvalidQuery, InvalidRequest
from autoblock.handlers.wiring import lifecycle
from autoblock.logic.addresses import parse_network
from autoblock.models import (
    BLOCK_ID_PATTERN,
    AddressHistory,
    BlockHistory,
    BlockList,
    BlockRequest,
    BlockView,
    ErrorBody,
    EventView,
    Status,
    settings,
)

if TYPE_CHECKING:  # read by Powertools only when it generates the OpenAPI document (openapi_document)
    from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

logger = Logger()
app = APIGatewayRestResolver()

MAX_BODY_BYTES = 8 * 1024
TOKEN_CACHE_SECONDS = 300  # a rotated token is picked up within five minutes
TOKEN_QUERY_NAMES = frozenset({"token", "access_token", "api_key", "apikey", "auth", "authorization"})
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def _error(status: int, code: str, message: str, fields: list[dict[str, str]] | None = None) -> Response[str]:
    body: dict[str, Any] = {"error": code, "message": message}
    if fields is not None:
        body["fields"] = fields
    return Response(status, "application/json", json.dumps(body))


def _ok(model: BaseModel, status: int = 200) -> Response[str]:
    return Response(status, "application/json", model.model_dump_json())


def _model(model: type[BaseModel], **errors: str) -> dict[int, Any]:
    """The OpenAPI description of a route's answers: 200 carrying ``model`` (routes answer Response
    objects), 401 for a missing or wrong token, and each error given as ``e404="why"``; every error
    answer is an ErrorBody."""

    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"model": ErrorBody}}}

    answers: dict[int, Any] = {
        200: {"description": "Successful Response", "content": {"application/json": {"model": model}}}
    }
    answers[401] = error("Missing or invalid bearer token (unauthorized)")
    answers.update({int(code.removeprefix("e")): error(why) for code, why in errors.items()})
    return answers


def _token() -> str:
    return str(parameters.get_secret(settings().token_secret_id, max_age=TOKEN_CACHE_SECONDS))


def refusal(event: APIGatewayProxyEvent) -> tuple[int, str, str] | None:
    """Authentication and the request-shape checks, before anything else reads the request
    (Powertools validates bodies before its middlewares run: no unauthenticated caller may
    learn anything from a validation error)."""
    query = {k.lower() for k in (event.query_string_parameters or {})}
    if query & TOKEN_QUERY_NAMES:
        return 400, "token_in_url", "send the token in the Authorization header, never in the URL"
    scheme, _, presented = (event.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), _token().encode()):
        return 401, "unauthorized", "missing or invalid bearer token"
    if event.http_method == "POST":
        content_type = (event.headers.get("content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return 415, "unsupported_media_type", "send the body as application/json"
        body = event.body or ""
        if len(body.encode()) > MAX_BODY_BYTES:
            return 413, "payload_too_large", f"the body is over {MAX_BODY_BYTES} bytes"
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            return 400, "invalid_json", "the body is not valid JSON"
        if not isinstance(parsed, dict):
            return 400, "invalid_json", "the body must be a JSON object"
    return None


def _refused(status: int, code: str, message: str) -> dict[str, Any]:
    logger.info("request refused", extra={"error": code})
    headers = {"Content-Type": "application/json"}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return {
        "statusCode": status,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "body": json.dumps({"error": code, "message": message}),
        "isBase64Encoded": False,
    }


@app.exception_handler(AutoblockError)  # type: ignore[untyped-decorator]
def domain_error(exc: AutoblockError) -> Response[str]:
    logger.info("request refused", extra={"error": exc.code})
    fields = exc.fields if isinstance(exc, InvalidRequest) else None
    return _error(exc.http_status, exc.code, str(exc), fields)


def _invalid(exc: ValidationError) -> InvalidRequest:
    """A body or query that does not match its model: the one error shape, with each field."""
    fields = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "type": e["type"], "message": e["msg"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    return InvalidRequest("; ".join(f"{f['field']}: {f['message']}" for f in fields), fields)


def body_as(model: type[BaseModel], name: str) -> Callable[[APIGatewayRestResolver, NextMiddleware], Response[Any]]:
    """A route middleware handing the route its JSON body, validated as ``model``, as argument ``name``
    (``refusal`` has already checked that the body is a JSON object within the size limit)."""

    def validate(router: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
        try:
            value = model.model_validate(json.loads(router.current_event.body or "{}"))
        except ValidationError as exc:
            raise _invalid(exc) from None
        router.context["_route_args"] = {**router.context.get("_route_args", {}), name: value}
        return next_middleware(router)

    return validate


def query(name: str) -> Callable[[APIGatewayRestResolver, NextMiddleware], Response[Any]]:
    """A route middleware handing the route the required query parameter ``name``."""

    def require(router: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
        value = (router.current_event.query_string_parameters or {}).get(name)
        if value is None:
            fields = [{"field": name, "type": "missing", "message": "Field required"}]
            raise InvalidRequest(f"{name}: Field required", fields)
        router.context["_route_args"] = {**router.context.get("_route_args", {}), name: value}
        return next_middleware(router)

    return require


@app.not_found
def no_route(exc: Exception) -> Response[str]:
    return _error(404, "not_found", "no such route")


def _source() -> str:
    return f"api:{app.current_event.request_context.request_id}"


@app.post(
    "/blocks",
    summary="Block an address",
    responses={
        401: {"description": "Missing or invalid bearer token", "content": {"application/json": {"model": ErrorBody}}},
        200: {
            "description": "An active block of the address was extended",
            "content": {"application/json": {"model": BlockView}},
        },
        202: {
            "description": (
                "The block was created: pending, with its rule numbers, applied by its workflow within a "
                "second (GET /blocks/{id}); or, with dry_run, recorded as a dry run"
            ),
            "content": {"application/json": {"model": BlockView}},
        },
        409: {
            "description": "Conflicts with a block of the address",
            "content": {"application/json": {"model": ErrorBody}},
        },
        422: {
            "description": "Never blockable (not_blockable), or a body that does not match (invalid_request, with fields)",
            "content": {"application/json": {"model": ErrorBody}},
        },
        503: {
            "description": "No free rule number (WhenFull=reject)",
            "content": {"application/json": {"model": ErrorBody}},
        },
    },
    security=SECURITY,
    middlewares=[body_as(BlockRequest, "request")],
)
def create_block(request: Annotated[BlockRequest, Body()]) -> Response[str]:
    """The block answers pending, with its rule numbers: its workflow applies it within a second
    (GET /blocks/{id} then says active, or rejected with the reason should EC2 refuse the entry)."""
    opened = lifecycle().open(request, source=request.source or _source())
    status = 200 if opened.outcome == "extended" else 202
    return _ok(BlockView.of(opened.block), status)


@app.get("/blocks", summary="List live blocks", security=SECURITY, responses=_model(BlockList))
def list_blocks() -> Response[str]:
    return _ok(BlockList(blocks=[BlockView.of(b) for b in lifecycle().live()]))


def _known(block_id: str) -> str:
    if not re.fullmatch(BLOCK_ID_PATTERN, block_id):
        raise BlockNotFound("no block with that id")
    return block_id


@app.get(
    "/blocks/<block_id>",
    summary="Show a block",
    security=SECURITY,
    responses=_model(BlockView, e404="No block with that id (not_found)"),
)
def get_block(block_id: Annotated[str, Path(description="The block's id", max_length=64)]) -> Response[str]:
    return _ok(BlockView.of(lifecycle().get(_known(block_id))))


@app.delete(
    "/blocks/<block_id>",
    summary="Unblock now",
    security=SECURITY,
    responses=_model(BlockView, e404="No block with that id (not_found)"),
)
def delete_block(block_id: Annotated[str, Path(description="The block's id", max_length=64)]) -> Response[str]:
    """Remove the block's entries now and stop its waiting execution."""
    return _ok(BlockView.of(lifecycle().unblock(_known(block_id), _source())))


@app.get(
    "/blocks/<block_id>/history",
    summary="A block's events, oldest first",
    security=SECURITY,
    responses=_model(BlockHistory, e404="No block with that id (not_found)"),
)
def block_history(block_id: Annotated[str, Path(description="The block's id", max_length=64)]) -> Response[str]:
    block = lifecycle().get(_known(block_id))
    events = [EventView.of(e) for e in lifecycle().history(block)]
    return _ok(BlockHistory(block_id=block.id, ip=block.cidr, events=events))


@app.get(
    "/history",
    summary="An address's events, oldest first",
    security=SECURITY,
    responses=_model(AddressHistory, e422="No ip, or not an address (invalid_request, invalid_address)"),
    middlewares=[query("ip")],
)
def address_history(
    ip: Annotated[str, Query(description="An address or CIDR, as POST /blocks takes it (required)")],
) -> Response[str]:
    try:
        cidr = parse_network(ip).compressed
    except InvalidAddress as exc:
        raise InvalidQuery(str(exc)) from None
    return _ok(AddressHistory(ip=cidr, events=[EventView.of(e) for e in lifecycle().address_history(cidr)]))


@app.get("/status", summary="Configuration and rule numbers in use", security=SECURITY, responses=_model(Status))
def status() -> Response[str]:
    return _ok(lifecycle().status())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    refused = refusal(APIGatewayProxyEvent(event))
    return _refused(*refused) if refused else app.resolve(event, context)


def openapi_document() -> str:
    """The OpenAPI document of the routes above (make openapi; a test checks docs/openapi.json)."""
    from aws_lambda_powertools.event_handler.openapi import params
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    globals().update(Body=params.Body, Path=params.Path, Query=params.Query)  # the routes' annotations
    return app.get_openapi_json_schema(
        title="autoblock",
        version="1.0.0",
        description="Time-limited blocking of attacker addresses in VPC Network ACLs.",
        security_schemes={"bearerAuth": HTTPBearer()},
    )
