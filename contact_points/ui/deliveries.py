"""The officers' dead letters: deliveries to an agency of our country that failed after the last try, with
"retry" and "re-route", and the pushes still retrying.

The page calls the same services as ``/v1/cp/deliveries`` (``broker.delivery.deadletters``), so it is
scoped exactly as the API is (an officer sees and acts on its own contact point's deliveries only; another
country's is "not found") and the rules (clearance, the sender's addressed agency, accreditation) are the
service's. Each action redirects back here with a sentence read from the delivery as it now is.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.delivery import deadletters
from broker.delivery.models import Channel
from broker.deps import DbSession, Keys
from broker.directory.models import Agency
from broker.errors import InvalidInput, SpocError
from broker.policy.service import cleared
from contact_points.ui.common import check_csrf, login_url, page, principal_or_none

router = APIRouter()
LIMIT = 100
Short = Annotated[str | None, Form(max_length=100)]


def dead_letter_count(session: Session, user: User) -> int:
    """How many dead letters wait for this officer's contact point (the queue page links to them)."""
    return len(deadletters.deliveries(session, user, status="dead", limit=LIMIT, offset=0))


def _agencies(session: Session, country: str) -> list[Agency]:
    return list(
        session.scalars(select(Agency).where(Agency.country == country, Agency.active).order_by(Agency.id))
    )


def _rows(session: Session, user: User, status: deadletters.ListedStatus) -> list[dict[str, Any]]:
    return [
        {
            "item": item,
            "message": message,
            "cleared": cleared(user.clearance, message.classification),
            "addressed": (message.envelope.get("header", {}) or {}).get("destination_agency"),
        }
        for item, message in deadletters.deliveries(session, user, status=status, limit=LIMIT, offset=0)
    ]


def _confirmation(session: Session, user: User, message_id: str | None, done: str | None) -> str | None:
    """What the officer's retry or re-route did, read from the delivery now (nothing for a crafted link)."""
    if done not in ("retry", "reroute") or not message_id:
        return None
    found = deadletters.delivery_in_scope(
        session, deadletters.officer_contact_point(session, user), message_id
    )
    if found is None:
        return None
    item, _ = found
    how = "by push, from attempt 1" if item.channel == Channel.PUSH else "to its pull inbox"
    if done == "retry":
        return f"Delivery to {item.agency_id} started again {how}."
    return f"Re-routed: delivering to {item.agency_id} {how}."


@router.get("/deliveries", response_class=HTMLResponse)
def deliveries_page(
    request: Request,
    session: DbSession,
    done: Annotated[str | None, Query(max_length=16)] = None,
    m: Annotated[str | None, Query(max_length=36)] = None,
) -> Response:
    principal = principal_or_none(request, session)
    if principal is None:
        return RedirectResponse(login_url("/ui/deliveries"), status_code=303)
    user = principal.user
    cp = deadletters.officer_contact_point(session, user)
    context = {
        "cp": cp,
        "dead": _rows(session, user, "dead"),
        "pending": _rows(session, user, "pending"),
        "agencies": _agencies(session, cp.country),
        "confirmation": _confirmation(session, user, m, done),
    }
    return page(request, principal, "deliveries.html", context)


def _refused(request: Request, session: DbSession, exc: SpocError) -> Response:
    session.rollback()
    principal = principal_or_none(request, session)
    if principal is None:
        return RedirectResponse("/ui/login", status_code=303)
    user = principal.user
    cp = deadletters.officer_contact_point(session, user)
    context = {
        "cp": cp,
        "dead": _rows(session, user, "dead"),
        "pending": _rows(session, user, "pending"),
        "agencies": _agencies(session, cp.country),
        "error": exc.detail,
    }
    return page(request, principal, "deliveries.html", context, status=exc.status)


@router.post("/deliveries/{message_id}/retry")
def retry_submit(message_id: str, request: Request, session: DbSession, csrf: Short = None) -> Response:
    principal = principal_or_none(request, session)
    if principal is None:
        return RedirectResponse("/ui/login", status_code=303)
    check_csrf(principal.session.csrf_token, csrf)
    try:
        deadletters.retry(session, principal.user, message_id, actor=principal.actor(request))
    except SpocError as exc:  # another contact point's delivery is "not found", as in the API: no hint
        return _refused(request, session, exc)
    return RedirectResponse(f"/ui/deliveries?done=retry&m={message_id}", status_code=303)


@router.post("/deliveries/{message_id}/reroute")
def reroute_submit(
    message_id: str,
    request: Request,
    session: DbSession,
    keys: Keys,
    csrf: Short = None,
    to_agency: Annotated[str | None, Form(max_length=32)] = None,
    channel: Annotated[str | None, Form(max_length=8)] = None,
    reason: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    principal = principal_or_none(request, session)
    if principal is None:
        return RedirectResponse("/ui/login", status_code=303)
    check_csrf(principal.session.csrf_token, csrf)
    try:
        if channel and channel not in (Channel.PUSH, Channel.PULL):
            raise InvalidInput("choose push, pull or the agency's own channel")
        deadletters.reroute(
            session,
            keys,
            principal.user,
            message_id,
            to_agency=to_agency or None,
            channel=Channel(channel) if channel else None,
            reason=reason or None,
            actor=principal.actor(request),
        )
    except SpocError as exc:
        return _refused(request, session, exc)
    return RedirectResponse(f"/ui/deliveries?done=reroute&m={message_id}", status_code=303)
