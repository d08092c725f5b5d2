"""Officer and auditor login over the API (bearer tokens); the UI uses the same sessions in a cookie."""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from broker.accounts.service import login, logout
from broker.accounts.throttle import LoginPolicy, LoginThrottle
from broker.config import Settings
from broker.deps import AnyUser, DbSession, SettingsDep, request_id
from broker.errors import NotAuthenticated, RateLimited
from schemas.api import LoginRequest, LoginResult

router = APIRouter(prefix="/v1/auth", tags=["auth"])
_throttle_lock = threading.Lock()


def login_throttle(request: Request) -> LoginThrottle:
    """The app's one login throttle, made on first use from its settings (one per app, so in-memory
    buckets are shared by every request of the process)."""
    state = request.app.state
    with _throttle_lock:
        throttle: LoginThrottle | None = getattr(state, "login_throttle", None)
        if throttle is None:
            settings: Settings = state.settings
            throttle = state.login_throttle = LoginThrottle.from_settings(settings)
    return throttle


Throttle = Annotated[LoginThrottle, Depends(login_throttle)]


def client_address(request: Request) -> str:
    """The caller's address, as the server saw it (behind a proxy: the forwarded one, if the server trusts
    the proxy, e.g. uvicorn's ``--forwarded-allow-ips``)."""
    return request.client.host if request.client else "unknown"


@router.post("/login", response_model=LoginResult, operation_id="login", responses={401: {}, 429: {}})
def api_login(
    body: LoginRequest, request: Request, session: DbSession, settings: SettingsDep, throttle: Throttle
) -> LoginResult:
    try:
        new = login(
            session,
            username=body.username,
            password=body.password,
            ttl_seconds=settings.session_ttl_seconds,
            request_id=request_id(request),
            otp=body.otp,
            master=request.app.state.master_key,
            source=client_address(request),
            throttle=throttle,
            policy=LoginPolicy.from_settings(settings),
        )
    except (NotAuthenticated, RateLimited) as exc:
        # The failure is counted (lockout) and audited: keep that, even though the call fails.
        session.commit()
        exc.audited = True  # as session:login-failed; not again as access:denied
        raise
    return LoginResult(token=new.token, expires_at=new.session.expires_at, csrf_token=new.csrf_token)


@router.post("/logout", status_code=204, operation_id="logout")
def api_logout(principal: AnyUser, request: Request, session: DbSession) -> None:
    logout(session, principal.session, principal.user, request_id=request_id(request))
