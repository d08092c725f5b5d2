"""The application factory and the one place errors become RFC 9457 problem+json."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi import routing as fastapi_routing
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.config import Settings, get_settings
from broker.crypto import MasterKey
from broker.db import make_engine, make_sessionmaker
from broker.errors import Conflict, InvalidInput, SpocError, Unavailable, UnsupportedMediaType
from broker.limits import BodySizeLimit, make_limiter

log = logging.getLogger("spoc.api")
PROBLEM = "application/problem+json"
# What a lost or overloaded database raises: on connect, on a query, on commit, waiting for the pool.
DB_UNAVAILABLE: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeout,
)
DB_RETRY_AFTER = 5


def problem_response(error: SpocError, request: Request) -> JSONResponse:
    headers = {}
    if error.status in (429, 503):
        headers["Retry-After"] = str(error.extra.get("retry_after", 5))
    body = error.problem(instance=request.url.path)
    body.pop("retry_after", None)
    return JSONResponse(status_code=error.status, content=body, media_type=PROBLEM, headers=headers)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def declared_non_json_body(request: Request) -> bool:
    """A body under ``/v1/`` declared as anything but JSON (``application/json`` or ``application/*+json``).

    Every API body is JSON; one labelled otherwise is refused rather than guessed at (a proxy, a cache or
    a WAF in front of us would have treated it by its label). A body sent without a Content-Type is read
    as JSON, as before; the browser forms live under ``/ui`` and are not affected.
    """
    if not request.url.path.startswith("/v1/") or request.method not in ("POST", "PUT", "PATCH"):
        return False
    content_type = request.headers.get("content-type")
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    return content_type is not None and has_body and not _is_json(content_type)


class RequestEdge:
    """ASGI middleware at the edge of every request: give it an id (the caller's ``X-Request-ID`` if
    printable, else a new one) that the audit log and the response carry, and refuse an API body declared
    as anything but JSON (415) before any route reads it.

    A plain ASGI class rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` runs the
    rest of the app in a task group with memory streams, a measurable cost on every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.headers.get("x-request-id", "")
        rid = given[:64] if given and given.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        if declared_non_json_body(request):
            declared = request.headers.get("content-type", "")[:100]
            error = UnsupportedMediaType(f"the body must be application/json, not {declared!r}")
            await problem_response(error, request)(scope, receive, send_with_id)
            return
        await self.app(scope, receive, send_with_id)


def _validation_errors(errors: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors[:50]
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SpocError)
    async def _spoc(request: Request, exc: SpocError) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = {
            "type": "about:blank",
            "title": str(exc.detail),
            "status": exc.status_code,
            "detail": str(exc.detail),
            "instance": request.url.path,
        }
        return JSONResponse(
            status_code=exc.status_code, content=body, media_type=PROBLEM, headers=dict(exc.headers or {})
        )

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = InvalidInput(
            "the request does not match the schema", errors=_validation_errors(list(exc.errors()))
        )
        return problem_response(err, request)

    @app.exception_handler(ValidationError)
    async def _model_validation(request: Request, exc: ValidationError) -> JSONResponse:
        err = InvalidInput(
            "the envelope does not match the schema",
            errors=_validation_errors(list(exc.errors(include_url=False, include_input=False))),
        )
        return problem_response(err, request)

    @app.exception_handler(StaleDataError)
    async def _stale(request: Request, exc: StaleDataError) -> JSONResponse:
        return problem_response(
            Conflict("the message changed while you decided; reload and try again"), request
        )

    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        # The request's transaction was rolled back (or never began): nothing was written half-way.
        # A commit that failed on a lost connection may or may not have landed, which is why agency
        # POSTs carry an Idempotency-Key: the retry after Retry-After gets the first answer.
        log.warning("database unavailable: %s", type(getattr(exc, "orig", None) or exc).__name__)
        return problem_response(
            Unavailable("the database is unavailable; retry shortly", retry_after=DB_RETRY_AFTER), request
        )

    for db_down in DB_UNAVAILABLE:
        app.add_exception_handler(db_down, _db_down)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        # A unique key lost a race with a concurrent request (same message, same key): nothing was kept.
        log.info("integrity conflict: %s", type(exc.orig).__name__)
        return problem_response(Conflict("a concurrent request changed the same data; retry"), request)

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the schema let through (an id or offset beyond the column's
        # integer range, a string the column cannot hold): the caller's input, not our failure.
        log.info("database refused a value: %s", type(exc.orig).__name__)
        return problem_response(InvalidInput("a value in the request is out of range"), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(SpocError("an unexpected error occurred; it was logged"), request)


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; ``type`` is a stable ``urn:spoc:problem:*`` slug.",
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}
_REASONS = {
    400: "Invalid input: malformed, or the request does not match the schema",
    401: "Not authenticated: no, bad, expired or replayed credentials",
    403: "Not permitted for this role, scope or clearance",
    404: "Not found in the caller's scope",
    409: "Conflict with the current state",
    413: "Request too large",
    415: "The body is declared as something other than JSON",
    422: "Refused by policy, or a signature, key or ciphertext did not verify",
    429: "Too many requests; see Retry-After",
    503: "A backing service is unavailable; see Retry-After",
}


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """Every API route with its effective path (FastAPI >= 0.16x nests included routers; older ones are flat)."""
    contexts = getattr(fastapi_routing, "iter_route_contexts", None)
    routes: Iterator[Any] = iter(contexts(app.routes) if contexts is not None else app.routes)
    for route in routes:
        if isinstance(getattr(route, "original_route", route), APIRoute) and route.include_in_schema:
            yield route


def _dependency_calls(route: Any) -> set[Any]:
    calls: set[Any] = set()
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        if dependant.call is not None:
            calls.add(getattr(dependant.call, "__qualname__", dependant.call))
        pending.extend(dependant.dependencies)
    return calls


def _error_statuses(route: Any) -> set[int]:
    """The error statuses a route can answer, from what it declares and what its dependencies raise."""
    calls = _dependency_calls(route)
    statuses = {int(code) for code in route.responses if str(code).isdigit() and int(code) >= 400}
    if route.dependant.path_params:
        statuses.add(404)
    if route.dependant.query_params or route.dependant.body_params or route.dependant.path_params:
        statuses.add(400)
    if route.dependant.body_params or "raw_body" in calls:
        statuses.update((400, 413, 415))
    if "current_agency" in calls:
        statuses.update((401, 429))
    if "current_principal" in calls:
        statuses.add(401)
    if "require.<locals>.dependency" in calls or "api_principal" in calls:
        statuses.add(403)  # a role it lacks, or a cookie-authenticated write without the CSRF header
    if "get_db" in calls:
        statuses.add(503)
    return statuses


def document_problems(app: FastAPI) -> None:
    """Make the OpenAPI say what the API answers on errors: RFC 9457 problem+json, with the statuses each
    route can produce. FastAPI's default documents a 422 ``HTTPValidationError`` that this API never sends
    (schema violations are 400 problem+json, see ``install_error_handlers``)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = spec.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = PROBLEM_SCHEMA
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        problem = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for route in _api_routes(app):
            statuses = _error_statuses(route)
            declared_422 = 422 in {int(c) for c in route.responses if str(c).isdigit()}
            for method in route.methods:
                operation = spec["paths"][route.path_format].get(method.lower())
                if operation is None:
                    continue
                responses = operation["responses"]
                if not declared_422:
                    responses.pop("422", None)
                for status in sorted(statuses):
                    responses[str(status)] = {
                        "description": _REASONS.get(status, "Error"),
                        "content": problem,
                    }
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None, *, routers: tuple[Any, ...] = ()) -> FastAPI:
    """Build the API. ``routers`` lets the layers above (contact points, UI) add theirs."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.engine.dispose()

    app = FastAPI(
        title="spoc",
        version="0.1.0",
        lifespan=lifespan,
        description="The cross-border contact-point exchange.",
    )
    engine = make_engine(settings)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.master_key = MasterKey.from_secret(settings.master_key_secret())
    app.state.limiter = make_limiter(
        broker_url=settings.broker_url, rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    app.add_middleware(RequestEdge)

    from broker.accounts.api import router as auth_router
    from broker.audit.api import router as audit_router
    from broker.delivery.api import deliveries_router
    from broker.delivery.api import router as inbox_router
    from broker.directory.api import router as directory_router
    from broker.keys.api import router as keys_router
    from broker.messages.api import router as messages_router
    from broker.region.api import router as region_router

    for router in (
        directory_router,
        keys_router,
        messages_router,
        inbox_router,
        deliveries_router,
        auth_router,
        audit_router,
        region_router,
        *routers,
    ):
        app.include_router(router)

    @app.get("/health", operation_id="health", tags=["ops"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    document_problems(app)
    return app
