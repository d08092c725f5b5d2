"""Typed request dependencies: the unit of work, the key store and who is calling.

Permissions are declared in route signatures with these aliases (``CurrentAgency``, ``Officer``,
``Auditor``...), never checked by hand inside handlers.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from broker.accounts.models import User, UserSession
from broker.accounts.service import authenticate
from broker.audit.service import Actor
from broker.config import Settings
from broker.crypto import MasterKey, PublicKey
from broker.crypto.httpsig import verify_request
from broker.directory.models import Agency
from broker.directory.service import find_agency
from broker.errors import NotAuthenticated, NotFound, NotPermitted, TooLarge
from broker.keys.service import DatabaseKeyStore, remember_nonce
from broker.limits import enforce

SESSION_COOKIE = "spoc_session"


def get_db(request: Request) -> Iterator[Session]:
    """The request's unit of work: committed after the handler returns, before the response is sent."""
    session: Session = request.app.state.sessionmaker()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


DbSession = Annotated[Session, Depends(get_db, scope="function")]


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_keys(request: Request, session: DbSession) -> DatabaseKeyStore:
    master: MasterKey = request.app.state.master_key
    return DatabaseKeyStore(session, master)


Keys = Annotated[DatabaseKeyStore, Depends(get_keys)]


def request_id(request: Request) -> str | None:
    rid: str | None = getattr(request.state, "request_id", None)
    return rid


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return None


async def raw_body(request: Request) -> bytes:
    """The request body, bounded before it is read (413), cached by Starlette for later readers."""
    limit: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    body = await request.body()
    if len(body) > limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    return body


RawBody = Annotated[bytes, Depends(raw_body)]


def current_agency(request: Request, session: DbSession, keys: Keys, body: RawBody) -> Agency:
    """The agency whose RFC 9421 signature this request carries (see ``broker.crypto.httpsig``), charged one
    token of its rate limit.

    The key comes from the key store's registry snapshot (no query of its own), so a revocation is seen by
    the next request, as for envelope signatures."""
    agency = _signed_by(request, session, keys, body)
    # After the signature (so nobody can spend another agency's tokens) and before any work.
    enforce(request.app.state.limiter, agency.id)
    return agency


def agency_charged_by_route(request: Request, session: DbSession, keys: Keys, body: RawBody) -> Agency:
    """As :func:`current_agency`, for a route that charges the rate limit itself, before any work, by what
    the request carries (a batch: one token per envelope), so that a refused request costs nothing and its
    ``Retry-After`` is the wait for the whole charge."""
    return _signed_by(request, session, keys, body)


def _signed_by(request: Request, session: Session, keys: DatabaseKeyStore, body: bytes) -> Agency:
    settings: Settings = request.app.state.settings
    agency_holder: list[Agency] = []

    def resolve(kid: str) -> PublicKey:
        row = keys.registered(kid)
        if row is not None and row.status == "revoked":
            when = row.revoked_at.isoformat() if row.revoked_at else "an earlier time"
            raise NotAuthenticated(f"the key {kid} was revoked at {when}; sign with a current key")
        if row is None or row.use != "sig" or row.status != "active":
            raise NotFound("no such agency key")
        agency = find_agency(session, row.party_id)
        if agency is None or not agency.active:
            raise NotFound("no such agency")
        agency_holder.append(agency)
        return row.public

    verified = verify_request(
        request.method,
        str(request.url),
        request.headers,
        body,
        resolve=resolve,
        max_age=settings.request_signature_max_age,
    )
    agency = agency_holder[0]
    remember_nonce(session, verified)
    request.state.verified_request = verified
    request.state.actor = Actor(agency.id, "agency", request_id(request))
    return agency


CurrentAgency = Annotated[Agency, Depends(current_agency)]
AgencyChargedByRoute = Annotated[Agency, Depends(agency_charged_by_route)]


@dataclass(frozen=True)
class Principal:
    user: User
    session: UserSession
    via_cookie: bool

    def actor(self, request: Request) -> Actor:
        return Actor(self.user.username, self.user.role, request_id(request))


def current_principal(request: Request, session: DbSession) -> Principal:
    token = _bearer(request)
    via_cookie = False
    if token is None:
        token = request.cookies.get(SESSION_COOKIE)
        via_cookie = True
    if not token:
        raise NotAuthenticated("log in first")
    user, row = authenticate(session, token)
    principal = Principal(user, row, via_cookie)
    # Who is calling, for the denial the edge audits if a later check (role, CSRF, scope) refuses the call.
    request.state.actor = principal.actor(request)
    return principal


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"


def csrf_ok(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of the session's CSRF token with the one the request carries."""
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


def api_principal(request: Request, principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """The API's caller. The API also accepts the UI's session cookie, which a browser attaches on its own
    to a forged cross-site request: a state-changing call authenticated by the cookie must therefore carry
    the session's CSRF token in ``X-CSRF-Token``. A bearer token is never sent on its own, so needs none.
    (The UI's own forms carry the token as a form field and are checked by the UI.)"""
    if (
        principal.via_cookie
        and request.method not in SAFE_METHODS
        and not csrf_ok(principal.session.csrf_token, request.headers.get(CSRF_HEADER))
    ):
        raise NotPermitted("a call authenticated by the session cookie needs the X-CSRF-Token header")
    return principal


def require(*roles: str) -> Callable[[Principal], Principal]:
    def dependency(principal: Annotated[Principal, Depends(api_principal)]) -> Principal:
        if principal.user.role not in roles:
            raise NotPermitted(f"this needs the role {' or '.join(roles)}")
        return principal

    return dependency


AnyUser = Annotated[Principal, Depends(api_principal)]
Officer = Annotated[Principal, Depends(require("officer", "supervisor"))]
Auditor = Annotated[Principal, Depends(require("auditor", "admin"))]
Admin = Annotated[Principal, Depends(require("admin"))]
