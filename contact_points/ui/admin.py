"""The admins' page: accounts — create, change role and clearance, lock, unlock, reset a password, TOTP.

Admins only (everyone else gets 403); every form carries the CSRF token; every change is audited with the
admin as actor (``broker.accounts.admin``). A new or reset password and a TOTP secret are shown once, on
the page that made them, and never stored in clear.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.accounts import admin as accounts
from broker.accounts.service import ROLES, create_user
from broker.deps import DbSession, Principal
from broker.directory.models import ContactPoint
from broker.errors import InvalidInput, NotPermitted, SpocError
from contact_points.ui.common import check_csrf, page, principal_or_none
from schemas.codelists import codes

router = APIRouter(prefix="/admin")
CLEARANCES = ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET"]
OPERATIONS = ("lock", "unlock", "reset-password", "totp", "totp-off", "update")


def _admin(request: Request, session: Session) -> Principal | Response:
    principal = principal_or_none(request, session)
    if principal is None:
        return RedirectResponse("/ui/login", status_code=303)
    if principal.user.role != "admin":
        raise NotPermitted("only admins manage accounts")
    return principal


def _render(
    request: Request, session: Session, principal: Principal, *, status: int = 200, **extra: Any
) -> Response:
    context = {
        "accounts": accounts.list_users(session),
        "status_of": accounts.status_of,
        "roles": ROLES,
        "clearances": CLEARANCES,
        "contact_points": session.scalars(select(ContactPoint.id).order_by(ContactPoint.id)).all(),
        "countries": sorted(codes("countries")),
        "form": {},
        **extra,
    }
    return page(request, principal, "admin_users.html", context, status=status)


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, session: DbSession) -> Response:
    principal = _admin(request, session)
    if isinstance(principal, Response):
        return principal
    return _render(request, session, principal)


@router.post("/users")
def create_submit(
    request: Request,
    session: DbSession,
    username: Annotated[str, Form(min_length=3, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")],
    role: Annotated[str, Form(max_length=16)],
    clearance: Annotated[str, Form(max_length=16)],
    csrf: Annotated[str | None, Form(max_length=100)] = None,
    contact_point: Annotated[str | None, Form(max_length=32)] = None,
    country: Annotated[str | None, Form(max_length=2)] = None,
    regional: Annotated[str | None, Form(max_length=8)] = None,
    full_name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    principal = _admin(request, session)
    if isinstance(principal, Response):
        return principal
    check_csrf(principal.session.csrf_token, csrf)
    password = accounts.new_password()
    try:
        create_user(
            session,
            username=username,
            password=password,
            role=role,
            contact_point_id=contact_point or None,
            country=country or None,
            regional=regional is not None,
            clearance=clearance,
            full_name=full_name,
            actor=principal.actor(request),
        )
    except SpocError as exc:
        session.rollback()
        # The form again, as typed (there is no password field: the password is generated).
        typed = {
            "username": username,
            "full_name": full_name,
            "role": role,
            "contact_point": contact_point or "",
            "country": country or "",
            "regional": regional is not None,
            "clearance": clearance,
        }
        return _render(request, session, principal, status=exc.status, error=exc.detail, form=typed)
    return _render(request, session, principal, shown=(username, "password", password))


@router.post("/users/{username}/{operation}")
def account_operation(
    username: str,
    operation: str,
    request: Request,
    session: DbSession,
    csrf: Annotated[str | None, Form(max_length=100)] = None,
    role: Annotated[str | None, Form(max_length=16)] = None,
    clearance: Annotated[str | None, Form(max_length=16)] = None,
) -> Response:
    principal = _admin(request, session)
    if isinstance(principal, Response):
        return principal
    check_csrf(principal.session.csrf_token, csrf)
    actor = principal.actor(request)
    shown: tuple[str, str, str] | None = None
    try:
        if operation not in OPERATIONS:
            raise InvalidInput(f"unknown operation {operation}")
        if username == principal.user.username and operation in ("lock", "update"):
            raise InvalidInput("lock or demote your own account from another admin account")
        if operation == "lock":
            accounts.lock(session, username, actor=actor)
        elif operation == "unlock":
            accounts.unlock(session, username, actor=actor)
        elif operation == "reset-password":
            password = accounts.new_password()
            accounts.reset_password(session, username, password=password, actor=actor)
            shown = (username, "new password", password)
        elif operation == "totp":
            master = request.app.state.master_key
            _, uri = accounts.enable_totp(session, username, master=master, actor=actor)
            shown = (username, "authenticator URI (otpauth)", uri)
        elif operation == "totp-off":
            accounts.disable_totp(session, username, actor=actor)
        else:
            accounts.update_user(session, username, actor=actor, role=role, clearance=clearance)
    except SpocError as exc:
        session.rollback()
        return _render(request, session, principal, status=exc.status, error=exc.detail)
    return _render(request, session, principal, shown=shown, done=f"{operation}: {username}")
