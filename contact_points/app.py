"""The whole HTTP application: the broker's API plus the contact points' API and web UI.

Two things are added for the web UI, in one place each: errors on ``/ui`` pages are rendered as an HTML
page (the API keeps RFC 9457 problem+json), and every page carries a Content-Security-Policy that lets the
browser load nothing that is not served by spoc itself (closed networks: no CDN, no external fonts).
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.app import create_app as create_broker_app
from broker.app import problem_response
from broker.config import Settings, get_settings
from broker.errors import InvalidInput, NotAuthenticated, SpocError
from contact_points.review.api import router as review_router

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
UI_PREFIXES = ("/ui", "/static")


class SecurityHeaders:
    """ASGI middleware: the pages and their static files say where they may load from (CSP ``'self'``:
    agency networks are closed, nothing comes from a CDN), may not be framed, sniffed or referred, and the
    pages are not cached. API responses are left alone. (A plain ASGI class: see ``RequestEdge``.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(UI_PREFIXES):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CSP)
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if path.startswith("/ui"):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    from contact_points.audit_ui.views import router as audit_ui_router
    from contact_points.ui.views import mount_static
    from contact_points.ui.views import router as ui_router

    app = create_broker_app(settings or get_settings(), routers=(review_router, ui_router, audit_ui_router))
    mount_static(app)
    install_ui(app)
    return app


def _is_page(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/ui/") and not path.startswith("/ui/audit")


def install_ui(app: FastAPI) -> None:
    """HTML error pages for the officers' pages, and the security headers of every page."""
    from contact_points.ui.common import page, principal_or_none

    api_validation = app.exception_handlers[RequestValidationError]

    def render(request: Request, error: SpocError) -> Response:
        if not _is_page(request):
            return problem_response(error, request)
        if isinstance(error, NotAuthenticated):
            return RedirectResponse("/ui/login", status_code=303)
        with request.app.state.sessionmaker() as session:
            principal = principal_or_none(request, session)
            return page(request, principal, "error.html", {"error": error.detail}, status=error.status)

    async def on_spoc_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SpocError)  # noqa: S101 - registered for SpocError only
        return render(request, exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        if not _is_page(request):
            response: Response = await api_validation(request, exc)  # type: ignore[misc]  # starlette's typing
            return response
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
        fields = ", ".join(str(e.get("loc", ("",))[-1]) for e in exc.errors()[:10])
        return render(request, InvalidInput(f"the form is incomplete or invalid: {fields}"))

    app.add_exception_handler(SpocError, on_spoc_error)
    app.add_exception_handler(RequestValidationError, on_validation)

    app.add_middleware(SecurityHeaders)
