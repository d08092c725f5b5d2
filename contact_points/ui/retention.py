"""The compliance review pages (officers and auditors): the review queue, one exchange's retention with its
legal holds, and the forms that hold, release and review (keep, delete now, hold). The message page carries the
same hold form for officers (``contact_points.ui.message_page``). *Delete now* is irrevocable, so it is a link to
the exchange's page with ``?confirm=delete``, which asks first (and says why not, when held or partly out of
scope); only the form there posts the deletion.

Every form carries the session's CSRF token. A refusal of the rules (no reason, held data, not ended) rolls the
request back, is recorded (``retention:refused``) and re-renders the page with the reason and its status; a
caller without the role or out of scope gets the error page, audited as every denial. After a change the page
says what happened by reading the exchange as it is now, never by echoing the address.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from broker.config import Settings
from broker.deps import DbSession, Principal, SettingsDep
from broker.errors import Conflict, NotPermitted, PolicyRefused
from broker.retention import service
from broker.retention.exchanges import RetentionScope, conversation_of, exchange, review_queue
from contact_points.ui.common import check_csrf, login_url, page, principal_or_none, safe_next

router = APIRouter()
REVIEWER_ROLES = ("officer", "supervisor", "auditor")
Text = Annotated[str | None, Form(max_length=service.REASON_MAX)]
Short = Annotated[str | None, Form(max_length=200)]
DONE = {
    "hold": "Legal hold set: nothing deletes this exchange's content while it stands.",
    "release": "Your legal hold was released.",
    "keep": "Review recorded: the content is kept until its retention period ends.",
    "delete": "Review recorded: the content of the exchange was deleted.",
}


def _reviewer(request: Request, session: Session) -> Principal | None:
    principal = principal_or_none(request, session)
    if principal is not None and principal.user.role not in REVIEWER_ROLES:
        raise NotPermitted("the compliance review is for contact-point officers and auditors")
    return principal


def _queue_context(session: Session, settings: Settings, principal: Principal) -> dict[str, Any]:
    scope = RetentionScope.of(session, principal.user)
    return {
        "entries": review_queue(session, settings, scope, limit=200),
        "scope": scope,
        "review_after": settings.retention_review_after_days,
    }


@router.get("/retention", response_class=HTMLResponse)
def queue_page(
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    find: Annotated[str | None, Query(max_length=36)] = None,
) -> Response:
    principal = _reviewer(request, session)
    if principal is None:
        return RedirectResponse(login_url("/ui/retention"), status_code=303)
    if find:
        cid = conversation_of(session, RetentionScope.of(session, principal.user), find.strip())
        return RedirectResponse(f"/ui/retention/{cid}", status_code=303)
    return page(request, principal, "retention.html", _queue_context(session, settings, principal))


def _exchange_context(
    session: Session, settings: Settings, principal: Principal, conversation_id: str
) -> dict[str, Any]:
    scope = RetentionScope.of(session, principal.user)
    view = exchange(session, settings, scope, conversation_id)
    return {"x": view, "scope": scope, "mine": [h for h in view.holds if scope.name in ("", h.scope)]}


@router.get("/retention/{conversation_id}", response_class=HTMLResponse)
def exchange_page(
    conversation_id: str,
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    done: Annotated[str | None, Query(max_length=16)] = None,
    confirm: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    principal = _reviewer(request, session)
    if principal is None:
        return RedirectResponse(login_url(f"/ui/retention/{conversation_id}"), status_code=303)
    context = _exchange_context(session, settings, principal, conversation_id)
    context["confirmation"] = DONE.get(done or "")
    context["confirm_delete"] = confirm == "delete"
    return page(request, principal, "retention_exchange.html", context)


def _back(conversation_id: str, back: str | None, done: str) -> RedirectResponse:
    target = safe_next(back) or f"/ui/retention/{conversation_id}"
    return RedirectResponse(f"{target}?done={done}", status_code=303)


def _refused(
    request: Request,
    session: Session,
    settings: Settings,
    principal: Principal,
    conversation_id: str,
    attempt: str,
    exc: PolicyRefused | Conflict,
) -> Response:
    session.rollback()
    service.record_refusal(
        session,
        settings,
        principal.user,
        conversation_id,
        attempt=attempt,
        error=exc,
        actor=principal.actor(request),
    )
    session.commit()
    context = _exchange_context(session, settings, principal, conversation_id)
    return page(
        request, principal, "retention_exchange.html", {**context, "error": exc.detail}, status=exc.status
    )


@router.post("/retention/{conversation_id}/hold")
def hold_submit(
    conversation_id: str,
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    csrf: Short = None,
    reason: Text = None,
    back: Short = None,
) -> Response:
    principal = _reviewer(request, session)
    if principal is None:
        return RedirectResponse("/ui/login", status_code=303)
    check_csrf(principal.session.csrf_token, csrf)
    try:
        service.set_hold(
            session, settings, principal.user, conversation_id, reason=reason, actor=principal.actor(request)
        )
    except (PolicyRefused, Conflict) as exc:
        return _refused(request, session, settings, principal, conversation_id, "hold", exc)
    return _back(conversation_id, back, "hold")


@router.post("/retention/{conversation_id}/release")
def release_submit(
    conversation_id: str,
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    csrf: Short = None,
    reason: Text = None,
    back: Short = None,
) -> Response:
    principal = _reviewer(request, session)
    if principal is None:
        return RedirectResponse("/ui/login", status_code=303)
    check_csrf(principal.session.csrf_token, csrf)
    try:
        service.release_holds(
            session, settings, principal.user, conversation_id, reason=reason, actor=principal.actor(request)
        )
    except (PolicyRefused, Conflict) as exc:
        return _refused(request, session, settings, principal, conversation_id, "release", exc)
    return _back(conversation_id, back, "release")


@router.post("/retention/{conversation_id}/review")
def review_submit(
    conversation_id: str,
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    decision: Annotated[str, Form(max_length=8)],
    csrf: Short = None,
    reason: Text = None,
) -> Response:
    principal = _reviewer(request, session)
    if principal is None:
        return RedirectResponse("/ui/login", status_code=303)
    check_csrf(principal.session.csrf_token, csrf)
    try:
        service.review(
            session,
            settings,
            principal.user,
            conversation_id,
            decision=decision,
            reason=reason,
            actor=principal.actor(request),
        )
    except (PolicyRefused, Conflict) as exc:
        return _refused(request, session, settings, principal, conversation_id, f"review:{decision}", exc)
    return RedirectResponse(f"/ui/retention/{conversation_id}?done={decision}", status_code=303)
