"""Typed request dependencies: the unit of work, the key store and who is calling.

Permissions are declared in route signatures with these aliases (``CurrentAgency``, ``Officer``,
``Auditor``...), never checked by hand inside handlers.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import Depends, Header, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.security.base import SecurityBase
from sqlalchemy.orm import Session

from broker.accounts.models import User, UserSession
from broker.accounts.service import authenticate
from broker.audit.service import Actor
from broker.config import Settings
from broker.crypto import MasterKey, PublicKey
from broker.crypto.httpsig import request_failure, verify_request
from broker.directory.models import Agency
from broker.directory.service import find_agency
from broker.errors import NotAuthenticated, NotFound, NotPermitted, TooLarge
from broker.keys.service import DatabaseKeyStore, remember_nonce
from broker.limits import enforce

SESSION_COOKIE = "spoc_session"


async def get_db(request: Request) -> AsyncIterator[Session]:
    """The request's unit of work: committed after the handler returns, before the response is sent.

    Opening a session does no I/O, so it happens on the event loop; ending it (commit or rollback, then the
    connection back to the pool) is one trip to the thread pool, shielded so that a client that went away
    cannot leave the connection checked out. (A plain ``def`` generator costs two trips, in and out.)"""
    session: Session = request.app.state.sessionmaker()
    handled = False
    try:
        yield session
        handled = True
    finally:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(_end, session, handled)


def _end(session: Session, handled: bool) -> None:
    try:
        if handled:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


DbSession = Annotated[Session, Depends(get_db, scope="function")]


# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool,
# and each such hop (a queue put, a thread woken, the GIL handed over) cost an agency request more than the
# work of the dependency itself.
async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_keys(request: Request, session: DbSession) -> DatabaseKeyStore:
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


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """``openapi_extra`` declaring the JSON request body of a route that reads it as :data:`RawBody` (and so
    declares no body FastAPI could see): the schema inlined, with every ``$ref`` to ``$defs`` replaced by its
    definition, so that it stands on its own in the OpenAPI document."""
    defs: dict[str, Any] = schema.get("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(
                    {**defs[ref.removeprefix("#/$defs/")], **{k: v for k, v in node.items() if k != "$ref"}}
                )
            return {k: inline(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": inline(schema)}},
        }
    }


class _RequestSignature(SecurityBase):
    """The OpenAPI face of agency authentication: an RFC 9421 signature in ``Signature-Input`` and
    ``Signature`` (with ``Content-Digest`` when there is a body). OpenAPI has no scheme type for HTTP message
    signatures, so it is declared as an API key in the ``Signature`` header with the profile described; the
    three headers are declared as parameters of every agency operation. Checking is :func:`_signed_by`'s."""

    def __init__(self) -> None:
        self.model = APIKey(
            **{"in": APIKeyIn.header},  # "in" is a Python keyword: passed by its alias
            name="Signature",
            description=(
                "RFC 9421 HTTP Message Signature by the agency's Ed25519 signing key: label and tag "
                "`spoc-agency`, covering `@method`, `@path`, `@query` and, with a body, `content-digest` "
                "(RFC 9530, sha-256); parameters `created`, `keyid` (RFC 7638 thumbprint), `nonce`, "
                '`alg="ed25519"`. Byte-for-byte profile and a worked example: docs/agency-signing.md. '
                "A refusal is 401 with a `reason` naming the failed check."
            ),
        )
        self.scheme_name = "agencySignature"

    async def __call__(
        self,
        signature_input: Annotated[
            str | None,
            Header(
                alias="Signature-Input", description="RFC 9421: `spoc-agency=(...);created=...;keyid=...`"
            ),
        ] = None,
        signature: Annotated[
            str | None, Header(alias="Signature", description="RFC 9421: `spoc-agency=:<base64>:`")
        ] = None,
        content_digest: Annotated[
            str | None,
            Header(alias="Content-Digest", description="RFC 9530 `sha-256=:<base64>:`, with a body only"),
        ] = None,
    ) -> None:
        return None


agency_signature = _RequestSignature()
AgencySignature = Annotated[None, Security(agency_signature)]


def current_agency(
    request: Request, session: DbSession, keys: Keys, body: RawBody, _signature: AgencySignature
) -> Agency:
    """The agency whose RFC 9421 signature this request carries (see ``broker.crypto.httpsig``), charged one
    token of its rate limit.

    The key comes from the key store's registry snapshot (no query of its own), so a revocation is seen by
    the next request, as for envelope signatures."""
    agency = _signed_by(request, session, keys, body)
    # After the signature (so nobody can spend another agency's tokens) and before any work.
    enforce(request.app.state.limiter, agency.id)
    return agency


def agency_charged_by_route(
    request: Request, session: DbSession, keys: Keys, body: RawBody, _signature: AgencySignature
) -> Agency:
    """As :func:`current_agency`, for a route that charges the rate limit itself, before any work, by what
    the request carries (a batch: one token per envelope), so that a refused request costs nothing and its
    ``Retry-After`` is the wait for the whole charge."""
    return _signed_by(request, session, keys, body)


def _signed_by(request: Request, session: Session, keys: DatabaseKeyStore, body: bytes) -> Agency:
    """Verify the request's signature (``broker.crypto.httpsig``; a 401 names the check that failed) and
    remember its nonce in a transaction of its own, committed before the handler runs.

    The nonce must outlive whatever the handler does: if it were written in the handler's transaction, a
    request refused by the handler (a 409, a policy refusal: rolled back) would leave no trace of its nonce,
    and the same bytes replayed later, once the state had changed, would pass. So the unit of work is
    committed here, when it holds nothing but the nonce (the registry reads before it write nothing); the
    handler then runs in a fresh transaction of the same session. A request whose nonce was seen is refused
    with ``reason: nonce``, whatever became of the first one."""
    settings: Settings = request.app.state.settings
    agency_holder: list[Agency] = []

    def resolve(kid: str) -> PublicKey:
        row = keys.registered(kid)
        if row is not None and row.status == "revoked":
            when = row.revoked_at.isoformat() if row.revoked_at else "an earlier time"
            raise request_failure("key-id", f"the key {kid} was revoked at {when}; sign with a current key")
        if row is not None and row.status == "retired":
            raise request_failure("key-id", f"the key {kid} was rotated out; sign with your current key")
        if row is None or row.use != "sig" or row.status != "active":
            raise NotFound("no such agency key")
        agency = find_agency(session, row.party_id)
        if agency is None or not agency.active:
            raise NotFound("no such agency")
        agency_holder.append(agency)
        return row.public

    verified = verify_request(
        request.method,
        request_target(request),
        request.headers,
        body,
        resolve=resolve,
        max_age=settings.request_signature_max_age,
    )
    agency = agency_holder[0]
    remember_nonce(session, verified)
    session.commit()
    request.state.verified_request = verified
    request.state.actor = Actor(agency.id, "agency", request_id(request))
    return agency


def request_target(request: Request) -> str:
    """The request target as it came on the wire: the path not percent-decoded (``raw_path``), the query as
    sent. RFC 9421 ``@path`` and ``@query`` are the values the client put in its request line, which is
    what it signed; Starlette's ``request.url`` re-encodes a decoded path."""
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) and raw_path else request.url.path
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"http://spoc{path}" + (f"?{query}" if query else "")


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
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500), which a forged
    # form field or a latin-1 header value can carry.
    return (
        bool(expected)
        and bool(given)
        and hmac.compare_digest(str(expected).encode(), str(given).encode("utf-8", "surrogatepass"))
    )


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
