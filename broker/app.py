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
from sqlalchemy import select
from sqlalchemy.exc import (
    DataError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.accounts.models import User
from broker.audit.denials import ANONYMOUS, Denial, DenialThrottle, record_denial
from broker.audit.service import CLIENT_REQUEST_ID, Actor
from broker.config import Settings, get_settings
from broker.crypto import MasterKey
from broker.crypto.httpsig import signature_kid
from broker.db import make_engine, make_sessionmaker
from broker.deps import SESSION_COOKIE
from broker.directory.models import Agency
from broker.directory.service import find_agency
from broker.docs import mount_docs
from broker.errors import (
    Conflict,
    InvalidInput,
    NotAuthenticated,
    SpocError,
    Unavailable,
    UnsupportedMediaType,
)
from broker.keys.models import PartyKey
from broker.keys.service import DatabaseKeyStore
from broker.limits import BodySizeLimit, make_limiter
from broker.messages.group import GroupCommit
from broker.ops import logs
from broker.ops import metrics as ops_metrics
from broker.ops.http import RequestMetrics
from broker.ops.ready import Readiness
from broker.ops.state import StateCollector
from broker.witness.protocol import ADD_CHECKPOINT

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
    as JSON, as before; the browser forms live under ``/ui`` and are not affected. The one exception is the
    witness's ``add-checkpoint``, whose body the C2SP tlog-witness spec defines as text.
    """
    if not request.url.path.startswith("/v1/") or request.method not in ("POST", "PUT", "PATCH"):
        return False
    if request.url.path == ADD_CHECKPOINT:
        return False
    content_type = request.headers.get("content-type")
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    return content_type is not None and has_body and not _is_json(content_type)


CLIENT_ID_MAX = 64


def client_request_id(given: str) -> str | None:
    """The caller's ``X-Request-ID`` if it is printable ASCII and short, else None (it is then dropped)."""
    if given and len(given) <= CLIENT_ID_MAX and given.isascii() and given.isprintable():
        return given
    return None


class RequestEdge:
    """ASGI middleware at the edge of every request: give it the server's own id, which the audit log and
    the response's ``X-Request-ID`` carry (never one the caller chose: a caller could otherwise pass its
    entries off as another request's), and refuse an API body declared as anything but JSON (415) before
    any route reads it. A caller's own ``X-Request-ID``, if printable and short, is kept apart: echoed as
    ``X-Client-Request-ID`` and written to the request's audit entries as ``details.client_request_id``.

    A plain ASGI class rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` runs the
    rest of the app in a task group with memory streams, a measurable cost on every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        rid = uuid.uuid4().hex
        client_id = client_request_id(request.headers.get("x-request-id", ""))
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["client_request_id"] = client_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = rid
                if client_id is not None:
                    headers["X-Client-Request-ID"] = client_id
            await send(message)

        token = CLIENT_REQUEST_ID.set(client_id)
        log_token = logs.REQUEST_ID.set(rid)  # every log line of the request carries its id (broker.ops.logs)
        try:
            if declared_non_json_body(request):
                declared = request.headers.get("content-type", "")[:100]
                error = UnsupportedMediaType(f"the body must be application/json, not {declared!r}")
                await problem_response(error, request)(scope, receive, send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        finally:
            logs.REQUEST_ID.reset(log_token)
            CLIENT_REQUEST_ID.reset(token)


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeaders:
    """ASGI middleware: every response (pages, their static files, ``/docs``, the API's JSON) says where a
    browser may load from (CSP ``'self'``: agency networks are closed, nothing comes from a CDN), that it
    may not be framed, sniffed or referred; pages under ``/ui`` are not cached. With ``behind_tls`` (clients
    reach spoc over HTTPS, perhaps through a TLS-terminating proxy, so the request's own scheme says
    nothing) responses carry HSTS and every cookie set is marked ``Secure``. (A plain ASGI class: see
    ``RequestEdge``.)"""

    def __init__(self, app: ASGIApp, *, behind_tls: bool) -> None:
        self.app = app
        self.behind_tls = behind_tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CSP)
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if path.startswith("/ui"):
                    headers.setdefault("Cache-Control", "no-store")
                if self.behind_tls:
                    headers.setdefault("Strict-Transport-Security", HSTS)
                    _secure_cookies(message)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _secure_cookies(message: Message) -> None:
    """Mark every ``Set-Cookie`` of a response start message ``Secure`` (those that are not already)."""
    rewritten = []
    for name, value in message.get("headers", []):
        if name.lower() == b"set-cookie" and b"secure" not in [
            part.strip().lower() for part in value.split(b";")[1:]
        ]:
            value = value + b"; Secure"
        rewritten.append((name, value))
    message["headers"] = rewritten


def _validation_errors(errors: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors[:50]
    ]


def _country_of(session: Session, actor: Actor) -> tuple[str, ...]:
    """The authenticated caller's country: its agency's, or the account's (none for a regional account)."""
    if actor.role == "agency":
        agency = session.get(Agency, actor.name)
        return (agency.country,) if agency is not None else ()
    if actor.role == "node":  # a peer node (broker.hop): the countries the directory says it serves
        from broker.region.service import current

        installed = current(session)
        node = installed.directory.node(actor.name) if installed is not None else None
        return tuple(sorted(node.countries)) if node is not None else ()
    country = session.scalar(select(User.country).where(User.username == actor.name))
    return (country,) if country else ()


def _claims(request: Request, session: Session) -> tuple[dict[str, str], tuple[str, ...]]:
    """What an unauthenticated call claimed to be (never a secret), and the country of a claimed agency key
    that is registered (its auditor is the one who should see attempts on it)."""
    claimed: dict[str, str] = {}
    countries: tuple[str, ...] = ()
    if "signature-input" in request.headers:
        try:
            kid = signature_kid(request.headers)
        except NotAuthenticated:
            kid = ""
        claimed["key_id"] = kid[:64]
        party = session.scalar(select(PartyKey.party_id).where(PartyKey.kid == kid[:64])) if kid else None
        if party is not None:
            claimed["party"] = party
            countries = (party.split("-", 1)[0],)
    if request.headers.get("authorization"):
        claimed["credential"] = "authorization header"
    elif request.cookies.get(SESSION_COOKIE):
        claimed["credential"] = "session cookie"
    return claimed, countries


def _path_template(request: Request) -> str:
    """The request's path with each path parameter's value put back as ``{name}`` (a route's own ``path``
    lacks the prefixes of the routers that include it)."""
    names = {str(v): str(k) for k, v in request.path_params.items()}
    return "/".join(f"{{{names[seg]}}}" if seg in names else seg for seg in request.url.path.split("/"))[:300]


def audit_denial(
    request: Request,
    error: SpocError,
    *,
    params: dict[str, str] | None = None,
    session: Session | None = None,
) -> None:
    """Record a denied call (``error.denial``) in the audit log, in a transaction of its own (the request's
    was rolled back with what it was refused), unless the raiser audited it already or the caller's
    denials are being throttled (``broker.audit.denials``). Called by the API's error handler and by the
    UI's, and by the few routes that answer a refusal themselves (a page of decisions, each with ``params``
    naming its message; a UI form re-rendered with the reason). A route that goes on working in its own
    transaction passes ``session``: the entry is written there and commits with it (a second connection would
    wait on the first's write lock under SQLite). A failure to write is logged, never turned into another error
    for the caller."""
    if not error.denial or error.audited:
        return
    template = _path_template(request)
    actor: Actor | None = getattr(request.state, "actor", None)
    rid = getattr(request.state, "request_id", None)
    source = request.client.host if request.client is not None else ""
    if session is not None:
        _write_denial(
            request, error, session, actor=actor, rid=rid, template=template, source=source, params=params
        )
        return
    try:
        with request.app.state.sessionmaker() as own:
            if _write_denial(
                request, error, own, actor=actor, rid=rid, template=template, source=source, params=params
            ):
                own.commit()
    except SQLAlchemyError as exc:
        log.warning("could not audit a denied call: %s", type(exc).__name__)


def _write_denial(
    request: Request,
    error: SpocError,
    session: Session,
    *,
    actor: Actor | None,
    rid: str | None,
    template: str,
    source: str,
    params: dict[str, str] | None,
) -> bool:
    """Add the denial's entry to ``session`` unless throttled; whether it was added."""
    if actor is None:
        claimed, countries = _claims(request, session)
        actor = Actor(ANONYMOUS, ANONYMOUS, rid)
    else:
        claimed, countries = {}, _country_of(session, actor)
    denial = Denial(
        actor=actor,
        countries=countries,
        method=request.method,
        route=template,
        params=params or {str(k): str(v) for k, v in request.path_params.items()},
        error=error.slug,
        status=error.status,
        kind=type(error).__name__,
        claimed=claimed,
        source=source,
        reason=reason if isinstance(reason := error.extra.get("reason"), str) else None,
    )
    suppressed = request.app.state.denial_throttle.admit(denial.throttle_key)
    if suppressed is None:
        log.info("denied call not audited (throttled): %s %s", request.method, template)
        return False
    record_denial(session, denial, suppressed=suppressed)
    return True


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SpocError)
    async def _spoc(request: Request, exc: SpocError) -> JSONResponse:
        await run_in_threadpool(audit_denial, request, exc)
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


def _warm(app: FastAPI) -> None:
    """Load this process's key registry and directory snapshots before the first request, not during it:
    otherwise the first requests to arrive together each load them (every key's JWK parsed and checked),
    and wait seconds. Best effort: a database not up yet only means the first request loads them."""
    try:
        with app.state.sessionmaker() as session:
            DatabaseKeyStore(session, app.state.master_key).registered("")
            find_agency(session, "")
    except SQLAlchemyError as exc:
        logging.getLogger("spoc.app").warning("snapshots not loaded at start-up: %s", type(exc).__name__)


def create_app(settings: Settings | None = None, *, routers: tuple[Any, ...] = ()) -> FastAPI:
    """Build the API. ``routers`` lets the layers above (contact points, UI) add theirs."""
    settings = settings or get_settings()
    logs.configure(settings)
    ops_metrics.initialise()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_warm, app)
        yield
        if app.state.group_commit is not None:
            app.state.group_commit.close()
        app.state.engine.dispose()

    app = FastAPI(
        title="spoc",
        version="0.1.0",
        lifespan=lifespan,
        description="The cross-border contact-point exchange.",
        # /docs is served by spoc itself (broker.docs): FastAPI's pages load Swagger UI and ReDoc from CDNs.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    engine = make_engine(settings)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.master_key = MasterKey.from_secret(settings.master_key_secret())
    # Concurrent single submissions share one commit (broker.messages.group); PostgreSQL only.
    app.state.group_commit = (
        GroupCommit(app.state.sessionmaker, window=settings.group_commit_wait_ms / 1000)
        if settings.group_commit and not settings.is_sqlite
        else None
    )
    app.state.limiter = make_limiter(
        broker_url=settings.broker_url,
        key_prefix=settings.broker_key_prefix,
        rate=settings.rate_limit_per_second,
        burst=settings.rate_limit_burst,
    )
    # Its own buckets (prefix "denied:"), never an agency's: a throttled denial costs no request token.
    app.state.denial_throttle = DenialThrottle(
        make_limiter(
            broker_url=settings.broker_url,
            key_prefix=settings.broker_key_prefix,
            rate=settings.audit_denials_per_minute / 60,
            burst=settings.audit_denials_per_minute,
        )
    )
    app.state.readiness = Readiness(app.state.sessionmaker, app.state.master_key, settings)
    app.state.state_collector = StateCollector(app.state.sessionmaker, settings)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    app.add_middleware(RequestEdge)
    app.add_middleware(SecurityHeaders, behind_tls=settings.behind_tls)
    app.add_middleware(RequestMetrics)  # outermost: every answer counted, the edge's own 415s too

    from broker.accounts.api import router as auth_router
    from broker.audit.api import router as audit_router
    from broker.delivery.api import deliveries_router
    from broker.delivery.api import router as inbox_router
    from broker.directory.api import router as directory_router
    from broker.hop.api import router as hop_router
    from broker.hop.reconcile import router as reconcile_router
    from broker.keys.api import router as keys_router
    from broker.messages.api import router as messages_router
    from broker.ops.api import router as ops_router
    from broker.region.api import router as region_router
    from broker.retention.api import router as retention_router
    from broker.stats.api import router as stats_router
    from broker.witness.api import router as witness_router

    for router in (
        directory_router,
        keys_router,
        messages_router,
        inbox_router,
        deliveries_router,
        auth_router,
        audit_router,
        region_router,
        hop_router,
        reconcile_router,
        witness_router,
        stats_router,
        ops_router,
        retention_router,
        *routers,
    ):
        app.include_router(router)

    mount_docs(app)
    document_problems(app)
    return app
