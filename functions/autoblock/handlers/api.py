"""The REST API: POST/GET /blocks, GET/DELETE /blocks/{id}, GET /blocks/{id}/history, GET /history,
GET /status, behind a bearer token.

API Gateway (REST, proxy integration) has already matched the route: the event names it as
``httpMethod`` and ``resource``, so routing is a dictionary look-up (``Router``). Validation at the
edge, paid for once: ``refusal`` checks the token and the body's shape before anything reads the
request, then the body and the query are validated against the same models the OpenAPI document is
generated from. That document is built at build time (``openapi_document``, ``make openapi``) by
Powertools' resolver from these very routes; a cold start imports none of its machinery.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from autoblock.errors import AutoblockError, BlockNotFound, InvalidAddress, InvalidQuery, InvalidRequest
from autoblock.handlers.wiring import lifecycle, token
from autoblock.logic.addresses import parse_network
from autoblock.models import (
    BLOCK_ID_PATTERN,
    AddressHistory,
    Block,
    BlockHistory,
    BlockList,
    BlockRequest,
    BlockView,
    ErrorBody,
    EventView,
    Status,
)

if TYPE_CHECKING:  # read only when Powertools generates the OpenAPI document (openapi_document)
    from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

logger = Logger()

MAX_BODY_BYTES = 8 * 1024
TOKEN_QUERY_NAMES = frozenset({"token", "access_token", "api_key", "apikey", "auth", "authorization"})
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]


@dataclass(frozen=True)
class Request:
    """What a route sees of the proxy event."""

    event: dict[str, Any]

    @property
    def source(self) -> str:
        return f"api:{self.event.get('requestContext', {}).get('requestId', '')}"

    @property
    def query(self) -> dict[str, str]:
        return dict(self.event.get("queryStringParameters") or {})

    @property
    def path(self) -> dict[str, str]:
        return dict(self.event.get("pathParameters") or {})


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})

    @classmethod
    def of(cls, model: BaseModel, status: int = 200) -> Answer:
        return cls(status, model.model_dump_json())

    @classmethod
    def error(cls, status: int, code: str, message: str, fields: list[dict[str, str]] | None = None) -> Answer:
        body: dict[str, Any] = {"error": code, "message": message}
        if fields is not None:
            body["fields"] = fields
        headers = {"Content-Type": "application/json"}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return cls(status, json.dumps(body), headers)

    def proxy(self) -> dict[str, Any]:
        """The answer as the REST API's Lambda proxy integration takes it."""
        return {
            "statusCode": self.status,
            "headers": self.headers,
            "multiValueHeaders": {k: [v] for k, v in self.headers.items()},
            "body": self.body,
            "isBase64Encoded": False,
        }


@dataclass(frozen=True)
class Route:
    method: str
    resource: str  # as API Gateway names it: /blocks/{block_id}
    func: Callable[..., Answer]
    summary: str
    responses: dict[int, Any]
    body: type[BaseModel] | None = None  # validated and passed as the argument "request"
    query: tuple[str, ...] = ()  # required query parameters, passed by name


class Router:
    """The routes of template.yaml's Api events, looked up by (method, resource)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}

    def route(
        self,
        method: str,
        resource: str,
        summary: str,
        responses: dict[int, Any],
        body: type[BaseModel] | None = None,
        query: tuple[str, ...] = (),
    ) -> Callable[[Callable[..., Answer]], Callable[..., Answer]]:
        def register(func: Callable[..., Answer]) -> Callable[..., Answer]:
            self.routes[(method, resource)] = Route(method, resource, func, summary, responses, body, query)
            return func

        return register

    def resolve(self, event: dict[str, Any]) -> Answer:
        route = self.routes.get((str(event.get("httpMethod")), str(event.get("resource"))))
        if route is None:
            return Answer.error(404, "not_found", "no such route")
        request = Request(event)
        try:
            return route.func(request, **self._arguments(route, request))
        except AutoblockError as exc:
            logger.info("request refused", extra={"error": exc.code})
            fields = exc.fields if isinstance(exc, InvalidRequest) else None
            return Answer.error(exc.http_status, exc.code, str(exc), fields)

    @staticmethod
    def _arguments(route: Route, request: Request) -> dict[str, Any]:
        arguments: dict[str, Any] = dict(request.path)
        if route.body is not None:
            try:  # refusal() already checked that the body is a JSON object within the size limit
                arguments["request"] = route.body.model_validate(json.loads(request.event.get("body") or "{}"))
            except ValidationError as exc:
                raise _invalid(exc) from None
        for name in route.query:
            if name not in request.query:
                raise InvalidRequest(
                    f"{name}: Field required", [{"field": name, "type": "missing", "message": "Field required"}]
                )
            arguments[name] = request.query[name]
        return arguments


def _invalid(exc: ValidationError) -> InvalidRequest:
    """A body that does not match its model: the one error shape, with each field at fault."""
    fields = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "type": e["type"], "message": e["msg"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    return InvalidRequest("; ".join(f"{f['field']}: {f['message']}" for f in fields), fields)


def answers(model: type[BaseModel], **errors: str) -> dict[int, Any]:
    """The OpenAPI description of a route's answers: 200 carrying ``model``, 401 for a missing or
    wrong token, and each error given as ``e404="why"``; every error answer is an ErrorBody."""

    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"model": ErrorBody}}}

    described: dict[int, Any] = {
        200: {"description": "Successful Response", "content": {"application/json": {"model": model}}}
    }
    described[401] = error("Missing or invalid bearer token (unauthorized)")
    described.update({int(code.removeprefix("e")): error(why) for code, why in errors.items()})
    return described


router = Router()


def refusal(event: dict[str, Any]) -> Answer | None:
    """Authentication and the request-shape checks, before anything else reads the request: no
    unauthenticated caller learns anything from a validation error."""
    query = {k.lower() for k in (event.get("queryStringParameters") or {})}
    if query & TOKEN_QUERY_NAMES:
        return Answer.error(400, "token_in_url", "send the token in the Authorization header, never in the URL")
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    scheme, _, presented = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token().encode()):
        return Answer.error(401, "unauthorized", "missing or invalid bearer token")
    if event.get("httpMethod") == "POST":
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return Answer.error(415, "unsupported_media_type", "send the body as application/json")
        body = event.get("body") or ""
        if len(body.encode()) > MAX_BODY_BYTES:
            return Answer.error(413, "payload_too_large", f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            return Answer.error(400, "invalid_json", "the body is not valid JSON")
        if not isinstance(parsed, dict):
            return Answer.error(400, "invalid_json", "the body must be a JSON object")
    return None


def _known(block_id: str) -> str:
    if not re.fullmatch(BLOCK_ID_PATTERN, block_id):
        raise BlockNotFound("no block with that id")
    return block_id


NOT_FOUND = "No block with that id (not_found)"


@router.route(
    "POST",
    "/blocks",
    summary="Block an address",
    body=BlockRequest,
    responses={
        **answers(
            BlockView,
            e409="Conflicts with a block of the address (conflict)",
            e422="Never blockable (not_blockable), or a body that does not match (invalid_request, with fields)",
            e503="No free rule number (capacity_exceeded, WhenFull=reject)",
        ),
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
    },
)
def create_block(http: Request, request: Annotated[BlockRequest, Body()]) -> Answer:
    """The block answers pending, with its rule numbers: its workflow applies it within a second
    (GET /blocks/{id} then says active, or rejected with the reason should EC2 refuse the entry)."""
    opened = lifecycle().open(request, source=request.source or http.source)
    view = _view(opened.block).model_copy(update={"also_extended": [b.id for b in opened.others]})
    return Answer.of(view, 200 if opened.outcome == "extended" else 202)


def _view(block: Block) -> BlockView:
    """A block as the API shows it, its own NACLs placed in the stack's account and Region."""
    settings = lifecycle().settings
    return BlockView.of(block, (settings.home_account_id, settings.home_region), settings.waf_scope)


@router.route("GET", "/blocks", summary="List live blocks", responses=answers(BlockList))
def list_blocks(http: Request) -> Answer:
    return Answer.of(BlockList(blocks=[_view(b) for b in lifecycle().live()]))


@router.route("GET", "/blocks/{block_id}", summary="Show a block", responses=answers(BlockView, e404=NOT_FOUND))
def get_block(http: Request, block_id: Annotated[str, Path(description="The block's id", max_length=64)]) -> Answer:
    return Answer.of(_view(lifecycle().get(_known(block_id))))


@router.route("DELETE", "/blocks/{block_id}", summary="Unblock now", responses=answers(BlockView, e404=NOT_FOUND))
def delete_block(http: Request, block_id: Annotated[str, Path(description="The block's id", max_length=64)]) -> Answer:
    """Remove the block's entries now and stop its waiting execution."""
    return Answer.of(_view(lifecycle().unblock(_known(block_id), http.source)))


@router.route(
    "GET",
    "/blocks/{block_id}/history",
    summary="A block's events, oldest first",
    responses=answers(BlockHistory, e404=NOT_FOUND),
)
def block_history(http: Request, block_id: Annotated[str, Path(description="The block's id", max_length=64)]) -> Answer:
    block = lifecycle().get(_known(block_id))
    events = [EventView.of(e) for e in lifecycle().history(block)]
    return Answer.of(BlockHistory(block_id=block.id, ip=block.cidr, events=events))


@router.route(
    "GET",
    "/history",
    summary="An address's events, oldest first",
    query=("ip",),
    responses=answers(AddressHistory, e422="No ip, or not an address (invalid_request, invalid_address)"),
)
def address_history(
    http: Request, ip: Annotated[str, Query(description="An address or CIDR, as POST /blocks takes it (required)")]
) -> Answer:
    try:
        cidr = parse_network(ip).compressed
    except InvalidAddress as exc:
        raise InvalidQuery(str(exc)) from None
    return Answer.of(AddressHistory(ip=cidr, events=[EventView.of(e) for e in lifecycle().address_history(cidr)]))


@router.route("GET", "/status", summary="Configuration and rule numbers in use", responses=answers(Status))
def status(http: Request) -> Answer:
    return Answer.of(lifecycle().status())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    refused = refusal(event)
    if refused is not None:
        logger.info("request refused", extra={"error": json.loads(refused.body)["error"]})
        return refused.proxy()
    return router.resolve(event).proxy()


def openapi_document() -> str:
    """The OpenAPI document of the routes above, generated by Powertools' resolver from their
    signatures and descriptions (make openapi; a test checks docs/openapi.json)."""
    import functools
    import inspect

    from aws_lambda_powertools.event_handler import APIGatewayRestResolver
    from aws_lambda_powertools.event_handler.openapi import params
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    globals().update(Body=params.Body, Path=params.Path, Query=params.Query)  # the routes' annotations
    resolver = APIGatewayRestResolver()
    for route in router.routes.values():
        # Powertools reads a route's parameters from its signature: the route's own, less ``http``;
        # its answers are the route's ``responses``.
        def documented(*args: Any, _func: Callable[..., Answer] = route.func, **kwargs: Any) -> Any:
            return _func(*args, **kwargs)

        signature = inspect.signature(route.func, eval_str=True)
        functools.update_wrapper(documented, route.func)
        vars(documented)["__signature__"] = signature.replace(
            parameters=list(signature.parameters.values())[1:], return_annotation=inspect.Signature.empty
        )
        resolver.route(
            rule=re.sub(r"\{(\w+)\}", r"<\1>", route.resource),
            method=route.method,
            summary=route.summary,
            responses=route.responses,
            security=SECURITY,
        )(documented)
    return resolver.get_openapi_json_schema(
        title="autoblock",
        version="1.0.0",
        description="Time-limited blocking of attacker addresses in VPC Network ACLs.",
        security_schemes={"bearerAuth": HTTPBearer()},
    )
