"""The application factory and the one place errors become RFC 9457 problem+json."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.config import Settings, get_settings
from broker.crypto import MasterKey
from broker.db import make_engine, make_sessionmaker
from broker.errors import Conflict, InvalidInput, SpocError, Unavailable
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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(SpocError("an unexpected error occurred; it was logged"), request)


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

    @app.middleware("http")
    async def _request_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        rid = request.headers.get("x-request-id", "")
        request.state.request_id = rid[:64] if rid.isprintable() and rid else uuid.uuid4().hex
        response = await call_next(request)
        response.headers["X-Request-ID"] = request.state.request_id
        return response

    from broker.accounts.api import router as auth_router
    from broker.audit.api import router as audit_router
    from broker.delivery.api import deliveries_router
    from broker.delivery.api import router as inbox_router
    from broker.directory.api import router as directory_router
    from broker.keys.api import router as keys_router
    from broker.messages.api import router as messages_router

    for router in (
        directory_router,
        keys_router,
        messages_router,
        inbox_router,
        deliveries_router,
        auth_router,
        audit_router,
        *routers,
    ):
        app.include_router(router)

    @app.get("/health", operation_id="health", tags=["ops"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
