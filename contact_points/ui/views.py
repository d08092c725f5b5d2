"""The officers' web UI (server-rendered, no external assets): login, queues, message page, decisions.

Forms are protected against CSRF: the login form by a double-submit cookie, every form after login by
the session's own CSRF token in a hidden field, compared in constant time. The queue page refreshes
itself (``/static/spoc.js`` polls ``/ui/queue/fragment`` and swaps the lists when their version changes);
without JavaScript it is an ordinary page. Decisions, acknowledgements and the admin pages are in
``contact_points.ui.actions`` and ``contact_points.ui.admin``; the cooperation dashboard in
``contact_points.ui.dashboard``.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session

from broker.accounts.api import Throttle, client_address
from broker.accounts.service import login, logout
from broker.accounts.throttle import LoginPolicy
from broker.deps import SESSION_COOKIE, DbSession, Keys, Principal, SettingsDep, request_id
from broker.errors import NotAuthenticated, RateLimited
from broker.messages.dissemination import pending_for_contact_point
from contact_points.review import notifications
from contact_points.review.present import summaries
from contact_points.review.queues import ALL, QueueFilter, counts
from contact_points.review.scope import OFFICER_ROLES, Direction
from contact_points.review.service import (
    officer_contact_point,
    queue,
)
from contact_points.ui.common import HERE, check_csrf, login_url, page, principal_or_none, safe_next
from contact_points.ui.common import templates as templates
from contact_points.ui.deliveries import dead_letter_count
from contact_points.ui.message_page import message_context
from contact_points.ui.outcome import confirmation, with_outcome
from contact_points.ui.retention import DONE as RETENTION_DONE
from schemas.codelists import codes

router = APIRouter(prefix="/ui", include_in_schema=False)
LOGIN_CSRF_COOKIE = "spoc_login_csrf"
QUEUE_LIMIT = 200


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/queue", status_code=303)


# --- login --------------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse, name="front_door")
@router.get("/", response_class=HTMLResponse)
def front_door(request: Request, session: DbSession) -> Response:
    """``/ui``, the address ``make run`` prints: the queues when logged in, else the login page."""
    if principal_or_none(request, session) is None:
        return RedirectResponse(login_url("/ui/queue"), status_code=303)
    return RedirectResponse("/ui/queue", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request,
    error: str | None = None,
    next: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    message = "Invalid username, password or code, or the account is locked." if error else None
    return _login_form(request, message, back=safe_next(next))


def _login_form(request: Request, message: str | None, *, back: str | None, status: int = 200) -> Response:
    token = secrets.token_urlsafe(32)
    context = {"login_csrf": token, "error": message, "next": back}
    response = page(request, None, "login.html", context, status=status)
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response


@router.post("/login")
def login_submit(
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    throttle: Throttle,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=200)],
    csrf: Annotated[str | None, Form(max_length=100)] = None,
    otp: Annotated[str | None, Form(max_length=6)] = None,
    next: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    check_csrf(request.cookies.get(LOGIN_CSRF_COOKIE), csrf)
    back = safe_next(next)
    try:
        new = login(
            session,
            username=username,
            password=password,
            ttl_seconds=settings.session_ttl_seconds,
            request_id=request_id(request),
            otp=otp or None,
            master=request.app.state.master_key,
            source=client_address(request),
            throttle=throttle,
            policy=LoginPolicy.from_settings(settings),
        )
    except NotAuthenticated:
        # The failed attempt is audited and counted: commit that, then show the form again.
        session.commit()
        again = "/ui/login?error=1" + (f"&{urlencode({'next': back})}" if back else "")
        return RedirectResponse(again, status_code=303)
    except RateLimited as exc:
        session.commit()  # the refusal is audited
        wait = exc.extra.get("retry_after", 60)
        response = _login_form(
            request,
            f"Too many failed logins from this address; try again in {wait} seconds.",
            back=back,
            status=429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    response = RedirectResponse(back or "/ui/queue", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        new.token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=settings.session_ttl_seconds,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout_submit(
    request: Request, session: DbSession, csrf: Annotated[str | None, Form(max_length=100)] = None
) -> Response:
    principal = principal_or_none(request, session)
    if principal is not None:
        check_csrf(principal.session.csrf_token, csrf)
        logout(session, principal.session, principal.user, request_id=request_id(request))
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# --- queues -------------------------------------------------------------------------------------------


def _filters(
    status: str | None,
    priority: str | None,
    country: str | None,
    category: str | None,
    classification: str | None,
    assigned: str | None,
) -> QueueFilter:
    return QueueFilter(
        status or None,
        priority or None,
        country or None,
        category or None,
        classification or None,
        assigned or None,
    )


def _queues(session: Session, principal: Principal, filters: QueueFilter) -> dict[str, Any]:
    user = principal.user
    cp = officer_contact_point(session, user)
    directions: tuple[Direction, ...] = ("outbound", "inbound")
    messages = {d: queue(session, user, d, limit=QUEUE_LIMIT, filters=filters) for d in directions}
    rows = {
        d: [with_outcome(row, m) for row, m in zip(summaries(session, messages[d]), messages[d], strict=True)]
        for d in directions
    }
    lists = {d: {"rows": rows[d], "counts": counts(session, user, d, filters=filters)} for d in directions}
    open_notes = notifications.for_user(session, user)
    pending_h2 = pending_for_contact_point(session, cp)
    dead_letters = dead_letter_count(session, user)
    fingerprint = "|".join(
        [
            *(f"{r['message_id']}:{r['state']}:{r['assigned_to']}" for d in directions for r in rows[d]),
            *(f"n{n.id}" for n in open_notes),
            *(f"h{r.id}" for r in pending_h2),
            f"d{dead_letters}",
        ]
    )
    return {
        "cp": cp,
        "lists": lists,
        "notes": open_notes,
        "pending_h2": pending_h2,
        "dead_letters": dead_letters,
        "filters": filters,
        "version": hashlib.sha256(fingerprint.encode()).hexdigest()[:16],
    }


@router.get("/queue", response_class=HTMLResponse)
def queue_page(
    request: Request,
    session: DbSession,
    status: Annotated[str | None, Query(max_length=40)] = None,
    priority: Annotated[str | None, Query(max_length=40)] = None,
    country: Annotated[str | None, Query(max_length=40)] = None,
    category: Annotated[str | None, Query(max_length=40)] = None,
    classification: Annotated[str | None, Query(max_length=40)] = None,
    assigned: Annotated[str | None, Query(max_length=40)] = None,
    done: Annotated[str | None, Query(max_length=16)] = None,
    m: Annotated[str | None, Query(max_length=36)] = None,
) -> Response:
    principal = principal_or_none(request, session)
    if principal is None:
        return RedirectResponse("/ui/login", status_code=303)
    user = principal.user
    if user.role in ("auditor", "admin"):
        return RedirectResponse("/ui/audit", status_code=303)  # auditors' pages: contact_points.audit_ui
    if user.role not in ("officer", "supervisor"):
        return page(
            request,
            principal,
            "error.html",
            {"error": "Only contact-point officers have queues."},
            status=403,
        )
    filters = _filters(status, priority, country, category, classification, assigned)
    context = _queues(session, principal, filters)
    context["confirmation"] = confirmation(session, user, m, done)
    return page(request, principal, "queue.html", {**context, **_filter_options(), "ALL": ALL})


@router.get("/queue/fragment", response_class=HTMLResponse)
def queue_fragment(
    request: Request,
    session: DbSession,
    status: Annotated[str | None, Query(max_length=40)] = None,
    priority: Annotated[str | None, Query(max_length=40)] = None,
    country: Annotated[str | None, Query(max_length=40)] = None,
    category: Annotated[str | None, Query(max_length=40)] = None,
    classification: Annotated[str | None, Query(max_length=40)] = None,
    assigned: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """The live part of the queue page, for the page's own polling (``X-Queue-Version`` says if it changed)."""
    principal = principal_or_none(request, session)
    if principal is None:
        return Response(status_code=401)  # the page's script sends the browser to the login page
    if principal.user.role not in OFFICER_ROLES:
        return Response(status_code=403)  # logged in, but only officers have queues
    filters = _filters(status, priority, country, category, classification, assigned)
    context = _queues(session, principal, filters)
    response = page(request, principal, "_queue_live.html", context)
    response.headers["X-Queue-Version"] = context["version"]
    response.headers["Cache-Control"] = "no-store"
    return response


def _filter_options() -> dict[str, Any]:
    return {
        "states": [
            "origin_review",
            "destination_review",
            "forwarded",
            "routed",
            "delivered",
            "answered",
            "returned",
            "clarification_requested",
            "superseded",
            "rejected",
            "refused",
        ],
        "countries": sorted(codes("countries")),
        "categories": sorted(codes("categories")),
        "classifications": ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET"],
    }


# --- one message --------------------------------------------------------------------------------------


@router.get("/messages/{message_id}", response_class=HTMLResponse)
def message_page(
    message_id: str,
    request: Request,
    session: DbSession,
    keys: Keys,
    done: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    principal = principal_or_none(request, session)
    if principal is None:
        return RedirectResponse(login_url(f"/ui/messages/{message_id}"), status_code=303)
    context = message_context(session, keys, principal, request, message_id)
    context["confirmation"] = confirmation(session, principal.user, message_id, done) or RETENTION_DONE.get(
        done or ""
    )
    return page(request, principal, "message.html", context)


def include_routers() -> None:
    """The action and admin pages hang off this router (one ``include_router`` in the app)."""
    from contact_points.ui.actions import router as actions_router
    from contact_points.ui.admin import router as admin_router
    from contact_points.ui.dashboard import router as dashboard_router
    from contact_points.ui.deliveries import router as deliveries_router
    from contact_points.ui.retention import router as retention_router

    router.include_router(actions_router)
    router.include_router(admin_router)
    router.include_router(deliveries_router)
    router.include_router(dashboard_router)
    router.include_router(retention_router)


include_routers()
