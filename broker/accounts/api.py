"""Officer and auditor login over the API (bearer tokens); the UI uses the same sessions in a cookie."""

from __future__ import annotations

from fastapi import APIRouter, Request

from broker.accounts.service import login, logout
from broker.deps import AnyUser, DbSession, SettingsDep, request_id
from broker.errors import NotAuthenticated
from schemas.api import LoginRequest, LoginResult

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/login", response_model=LoginResult, operation_id="login", responses={401: {}})
def api_login(body: LoginRequest, request: Request, session: DbSession, settings: SettingsDep) -> LoginResult:
    try:
        new = login(
            session,
            username=body.username,
            password=body.password,
            ttl_seconds=settings.session_ttl_seconds,
            request_id=request_id(request),
            otp=body.otp,
            master=request.app.state.master_key,
        )
    except NotAuthenticated as exc:
        # The failure is counted (lockout) and audited: keep that, even though the call fails.
        session.commit()
        exc.audited = True  # as session:login-failed; not again as access:denied
        raise
    return LoginResult(token=new.token, expires_at=new.session.expires_at, csrf_token=new.csrf_token)


@router.post("/logout", status_code=204, operation_id="logout")
def api_logout(principal: AnyUser, request: Request, session: DbSession) -> None:
    logout(session, principal.session, principal.user, request_id=request_id(request))
