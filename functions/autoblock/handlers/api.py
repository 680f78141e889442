"""The REST API: POST/GET /blocks, GET/DELETE /blocks/{id}, GET /blocks/{id}/history, GET /history,
GET /status, behind a bearer token."""

from __future__ import annotations

import hmac
import json
import re
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from autoblock.errors import AutoblockError, BlockNotFound, InvalidAddress, InvalidQuery
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

logger = Logger()
app = APIGatewayRestResolver(enable_validation=True)

MAX_BODY_BYTES = 8 * 1024
TOKEN_CACHE_SECONDS = 300  # a rotated token is picked up within five minutes
TOKEN_QUERY_NAMES = frozenset({"token", "access_token", "api_key", "apikey", "auth", "authorization"})
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def _error(status: int, code: str, message: str) -> Response[str]:
    return Response(status, "application/json", json.dumps({"error": code, "message": message}))


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
    return _error(exc.http_status, exc.code, str(exc))


@app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
def invalid_request(exc: RequestValidationError) -> Response[str]:
    """A body or query that does not match the route's model: the one error shape, with each field."""
    fields = [
        {
            "field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")) or "body",
            "type": str(e.get("type", "")),
            "message": str(e.get("msg", "")),
        }
        for e in exc.errors()
    ]
    message = "; ".join(f"{f['field']}: {f['message']}" for f in fields) or "the request is not valid"
    logger.info("request refused", extra={"error": "invalid_request", "fields": [f["field"] for f in fields]})
    body = {"error": "invalid_request", "message": message, "fields": fields}
    return Response(422, "application/json", json.dumps(body))


@app.not_found
def no_route(exc: Exception) -> Response[str]:
    return _error(404, "not_found", "no such route")


def _source() -> str:
    return f"api:{app.current_event.request_context.request_id}"


@app.post(
    "/blocks",
    summary="Block an address",
    responses={
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
)
def create_block(request: Annotated[BlockRequest, Body()]) -> Response[str]:
    """The block answers pending, with its rule numbers: its workflow applies it within a second
    (GET /blocks/{id} then says active, or rejected with the reason should EC2 refuse the entry)."""
    opened = lifecycle().open(request, source=request.source or _source())
    status = 200 if opened.outcome == "extended" else 202
    return Response(status, "application/json", BlockView.of(opened.block).model_dump_json())


@app.get("/blocks", summary="List live blocks", security=SECURITY)
def list_blocks() -> BlockList:
    return BlockList(blocks=[BlockView.of(b) for b in lifecycle().live()])


BlockId = Annotated[str, Path(description="The block's id", max_length=64)]


def _known(block_id: str) -> str:
    if not re.fullmatch(BLOCK_ID_PATTERN, block_id):
        raise BlockNotFound("no block with that id")
    return block_id


@app.get("/blocks/<block_id>", summary="Show a block", security=SECURITY)
def get_block(block_id: BlockId) -> BlockView:
    return BlockView.of(lifecycle().get(_known(block_id)))


@app.delete("/blocks/<block_id>", summary="Unblock now", security=SECURITY)
def delete_block(block_id: BlockId) -> BlockView:
    """Remove the block's entries now and stop its waiting execution."""
    return BlockView.of(lifecycle().unblock(_known(block_id), _source()))


@app.get("/blocks/<block_id>/history", summary="A block's events, oldest first", security=SECURITY)
def block_history(block_id: BlockId) -> BlockHistory:
    block = lifecycle().get(_known(block_id))
    events = [EventView.of(e) for e in lifecycle().history(block)]
    return BlockHistory(block_id=block.id, ip=block.cidr, events=events)


@app.get("/history", summary="An address's events, oldest first", security=SECURITY)
def address_history(
    ip: Annotated[str, Query(description="An address or CIDR, as POST /blocks takes it (required)")],
) -> AddressHistory:
    try:
        cidr = parse_network(ip).compressed
    except InvalidAddress as exc:
        raise InvalidQuery(str(exc)) from None
    return AddressHistory(ip=cidr, events=[EventView.of(e) for e in lifecycle().address_history(cidr)])


@app.get("/status", summary="Configuration and rule numbers in use", security=SECURITY)
def status() -> Status:
    return lifecycle().status()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    refused = refusal(APIGatewayProxyEvent(event))
    return _refused(*refused) if refused else app.resolve(event, context)


def openapi_document() -> str:
    return app.get_openapi_json_schema(
        title="autoblock",
        version="1.0.0",
        description="Time-limited blocking of attacker addresses in VPC Network ACLs.",
        security_schemes={"bearerAuth": HTTPBearer()},
    )
