"""Typed dependencies of the contact points' API, beside ``broker.deps``.

``CpOfficer`` is ``broker.deps.Officer`` plus CSRF for browsers: the officers' API also accepts the UI's
session cookie, and a state-changing call authenticated by that cookie must carry the session's CSRF token
in ``X-CSRF-Token`` (a bearer token is not sent by browsers on their own, so it needs none).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from broker.deps import Principal, require
from broker.errors import NotPermitted

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


def _officer_with_csrf(
    request: Request, principal: Annotated[Principal, Depends(require("officer", "supervisor"))]
) -> Principal:
    if (
        principal.via_cookie
        and request.method not in SAFE_METHODS
        and not csrf_ok(principal.session.csrf_token, request.headers.get(CSRF_HEADER))
    ):
        raise NotPermitted("a call authenticated by the session cookie needs the X-CSRF-Token header")
    return principal


CpOfficer = Annotated[Principal, Depends(_officer_with_csrf)]
Supervisor = Annotated[Principal, Depends(require("supervisor"))]
