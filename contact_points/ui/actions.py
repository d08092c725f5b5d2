"""The officers' forms: decisions, acknowledging H3 conditions, dismissing notifications, own-initiative
provision. Every POST checks the session's CSRF token first; a refused decision re-renders the message
page with the reason (and the status of the error), nothing half-done (the request's transaction rolls
back)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from broker.app import audit_denial
from broker.deps import DbSession, Keys, Principal
from broker.errors import InvalidInput, SpocError
from broker.params import Int64
from contact_points.review import notifications
from contact_points.review.content import acknowledge_conditions
from contact_points.review.own_initiative import provide
from contact_points.review.service import decide, officer_contact_point
from contact_points.ui.common import check_csrf, page, principal_or_none
from contact_points.ui.message_page import message_context
from schemas.api import Decision
from schemas.codelists import codes

router = APIRouter()
Text = Annotated[str | None, Form(max_length=2000)]
Short = Annotated[str | None, Form(max_length=100)]
CHOOSE_AN_AGENCY = "Choose the agency to route the message to: nothing was routed."


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors())


def _refused(
    request: Request, session: DbSession, keys: Keys, principal: Principal, message_id: str, exc: Exception
) -> Response:
    session.rollback()
    if isinstance(exc, SpocError):
        audit_denial(request, exc)  # answered here, not by the error handler: audit it as that would
    status = exc.status if isinstance(exc, SpocError) else 400
    detail = exc.detail if isinstance(exc, SpocError) else str(exc)
    try:
        context = message_context(session, keys, principal, request, message_id)
    except SpocError:
        context = {}
    return page(request, principal, "message.html", {**context, "error": detail}, status=status)


@router.post("/messages/{message_id}/decide")
def decide_submit(
    message_id: str,
    request: Request,
    session: DbSession,
    keys: Keys,
    action: Annotated[str, Form(max_length=16)],
    csrf: Short = None,
    reason: Text = None,
    refusal_ground: Annotated[str | None, Form(max_length=64)] = None,
    route_to_agency: Annotated[str | None, Form(max_length=32)] = None,
    extend_hours: Annotated[str | None, Form(max_length=6)] = None,
    extension_reason: Annotated[str | None, Form(max_length=64)] = None,
    assign_to: Annotated[str | None, Form(max_length=64)] = None,
    dissemination_request: Annotated[str | None, Form(max_length=12)] = None,
) -> Response:
    principal = principal_or_none(request, session)
    if principal is None:
        return RedirectResponse("/ui/login", status_code=303)
    check_csrf(principal.session.csrf_token, csrf)
    if action == "route" and not route_to_agency:
        # The form starts with no agency chosen: say so in words (the service refuses it too).
        return _refused(request, session, keys, principal, message_id, InvalidInput(CHOOSE_AN_AGENCY))
    try:
        decision = Decision.model_validate(
            {
                "action": action,
                "reason": reason or None,
                "refusal_ground": refusal_ground or None,
                "route_to_agency": route_to_agency or None,
                "extend_hours": int(extend_hours) if extend_hours else None,
                "extension_reason": extension_reason or None,
                "assign_to": assign_to or None,
                "dissemination_request": int(dissemination_request) if dissemination_request else None,
            }
        )
        decide(session, keys, principal.user, message_id, decision, actor=principal.actor(request))
    except ValidationError as exc:
        return _refused(request, session, keys, principal, message_id, InvalidInput(_validation_message(exc)))
    except (SpocError, ValueError) as exc:
        return _refused(request, session, keys, principal, message_id, exc)
    if action in ("assign", "extend", "accept", "grant", "deny"):
        return RedirectResponse(f"/ui/messages/{message_id}?done={action}", status_code=303)
    return RedirectResponse(f"/ui/queue?done={action}&m={message_id}", status_code=303)


@router.post("/messages/{message_id}/acknowledge")
def acknowledge_submit(message_id: str, request: Request, session: DbSession, csrf: Short = None) -> Response:
    principal = principal_or_none(request, session)
    if principal is None:
        return RedirectResponse("/ui/login", status_code=303)
    check_csrf(principal.session.csrf_token, csrf)
    acknowledge_conditions(session, principal.user, message_id, actor=principal.actor(request))
    return RedirectResponse(f"/ui/messages/{message_id}", status_code=303)


@router.post("/notifications/{notification_id}/dismiss")
def dismiss_submit(
    notification_id: Int64, request: Request, session: DbSession, csrf: Short = None
) -> Response:
    principal = principal_or_none(request, session)
    if principal is None:
        return RedirectResponse("/ui/login", status_code=303)
    check_csrf(principal.session.csrf_token, csrf)
    notifications.dismiss(session, principal.user, notification_id, actor=principal.actor(request))
    return RedirectResponse("/ui/queue", status_code=303)


def _provide_options() -> dict[str, object]:
    return {
        "countries": sorted(codes("countries")),
        "categories": sorted(codes("categories")),
        "classifications": ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET"],
        "handling": ["H0", "H1", "H2", "H3"],
    }


@router.get("/provide", response_class=HTMLResponse)
def provide_page(request: Request, session: DbSession) -> Response:
    principal = principal_or_none(request, session)
    if principal is None:
        return RedirectResponse("/ui/login", status_code=303)
    officer_contact_point(session, principal.user)
    return page(request, principal, "provide.html", {**_provide_options(), "form": {}})


@router.post("/provide")
def provide_submit(
    request: Request,
    session: DbSession,
    keys: Keys,
    destination_country: Annotated[str, Form(max_length=2)],
    category: Annotated[str, Form(max_length=64)],
    classification: Annotated[str, Form(max_length=16)],
    information: Annotated[str, Form(max_length=100_000)],
    csrf: Short = None,
    destination_agency: Annotated[str | None, Form(max_length=32)] = None,
    handling_codes: Annotated[list[str] | None, Form()] = None,
    conditions: Text = None,
) -> Response:
    principal = principal_or_none(request, session)
    if principal is None:
        return RedirectResponse("/ui/login", status_code=303)
    check_csrf(principal.session.csrf_token, csrf)
    officer_contact_point(session, principal.user)  # before the form page, which needs an officer's
    form = {
        "destination_country": destination_country,
        "destination_agency": destination_agency or "",
        "category": category,
        "classification": classification,
        "handling_codes": handling_codes or ["H0"],
        "information": information,
        "conditions": conditions or "",
    }
    try:
        message = provide(
            session,
            keys,
            principal.user,
            destination_country=destination_country,
            destination_agency=destination_agency or None,
            category=category,
            classification=classification,
            handling_codes=handling_codes or ["H0"],
            information=information,
            conditions=conditions or None,
            actor=principal.actor(request),
        )
    except ValidationError as exc:
        session.rollback()
        context = {**_provide_options(), "form": form, "error": _validation_message(exc)}
        return page(request, principal, "provide.html", context, status=400)
    except SpocError as exc:
        session.rollback()
        context = {**_provide_options(), "form": form, "error": exc.detail}
        return page(request, principal, "provide.html", context, status=exc.status)
    return RedirectResponse(f"/ui/messages/{message.id}?done=provide", status_code=303)
