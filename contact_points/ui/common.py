"""What the officers' pages share: templates and their filters, the logged-in principal, CSRF, page rendering.

Every form after login carries the session's CSRF token in a hidden field ``csrf``, compared in constant
time; a POST without it (or with another) is refused with 403 before anything else happens.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy.orm import Session

from broker.deps import Principal, current_principal
from broker.errors import NotAuthenticated, NotPermitted
from contact_points.deps import csrf_ok
from schemas.codelists import CodeListName, entries, label
from schemas.primitives import show_format_characters

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
OFFICER_ROLES = ("officer", "supervisor")

DECISION_LABELS = {
    "approve": "Approve",
    "reject": "Reject",
    "return": "Return for clarification",
    "accept": "Accept",
    "route": "Route to agency",
    "refuse": "Refuse",
    "extend": "Extend deadline",
    "assign": "Assign",
    "grant": "Grant",
    "deny": "Deny",
}


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _code_label(code: str, name: str) -> str:
    try:
        return label(cast(CodeListName, name), code)
    except ValueError:
        return code


def _finalize(value: Any) -> Any:
    """Every ``{{ value }}`` of a page: format characters (bidi overrides, zero-width...) shown as markers."""
    if isinstance(value, Markup):
        return Markup(show_format_characters(str(value)))  # noqa: S704 - markers are plain ASCII, no markup
    if isinstance(value, str):
        return show_format_characters(value)
    return value


templates.env.finalize = _finalize
templates.env.filters["when"] = _when
templates.env.filters["codelabel"] = _code_label
templates.env.globals["decision_labels"] = DECISION_LABELS
templates.env.globals["codelist"] = entries


def principal_or_none(request: Request, session: Session) -> Principal | None:
    try:
        return current_principal(request, session)
    except NotAuthenticated:
        return None


_NEXT = re.compile(r"/ui(?:/[A-Za-z0-9_\-./]*)?")


def safe_next(value: str | None) -> str | None:
    """Where to go after logging in: a path of the officers' UI only (never another site: no open redirect)."""
    if value and _NEXT.fullmatch(value) and "//" not in value and ".." not in value:
        return value
    return None


def login_url(back: str) -> str:
    """The login page, coming back to ``back`` afterwards (the queue is where a login lands anyway)."""
    if back == "/ui/queue":
        return "/ui/login"
    return "/ui/login?" + urlencode({"next": back})


def check_csrf(expected: str | None, given: str | None) -> None:
    if not csrf_ok(expected, given):
        raise NotPermitted("the form's CSRF token is missing or wrong; reload the page and try again")


def page(
    request: Request,
    principal: Principal | None,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
) -> Response:
    base: dict[str, Any] = {"user": None, "csrf": None, "error": None}
    if principal is not None:
        base.update(user=principal.user, csrf=principal.session.csrf_token)
    return templates.TemplateResponse(request, name, {**base, **(context or {})}, status_code=status)
