"""The whole HTTP application: the broker's API plus the contact points' API and web UI.

One thing is added for the web UI: errors on ``/ui`` pages are rendered as an HTML page (the API keeps
RFC 9457 problem+json); denied calls are audited as on the API (``broker.app.audit_denial``). The security
headers of every response, pages included, are the broker's (``broker.app.SecurityHeaders``).
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from broker.app import audit_denial, problem_response
from broker.app import create_app as create_broker_app
from broker.config import Settings, get_settings
from broker.errors import InvalidInput, NotAuthenticated, SpocError
from broker.stats.peers import PeerCache
from contact_points.review.api import router as review_router


def create_app(settings: Settings | None = None) -> FastAPI:
    from contact_points.audit_ui.views import router as audit_ui_router
    from contact_points.ui.views import mount_static
    from contact_points.ui.views import router as ui_router

    app = create_broker_app(settings or get_settings(), routers=(review_router, ui_router, audit_ui_router))
    mount_static(app)
    install_ui(app)
    app.state.peer_stats = PeerCache()  # the dashboard's region view: peers' aggregates, kept a few minutes
    return app


def _is_page(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/ui/") and not path.startswith("/ui/audit")


def install_ui(app: FastAPI) -> None:
    """HTML error pages for the officers' pages."""
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
        await run_in_threadpool(audit_denial, request, exc)
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
