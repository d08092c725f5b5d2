"""Denied calls in the audit log: who was refused what, so probing and attempts to exceed a role are found.

The HTTP edge (``broker.app``) calls :func:`record_denial` for every error marked ``denial`` (401, 403 for a
role, a CSRF token or a clearance, 404 out of scope, a four-eyes refusal), in a short transaction of its
own: the request's was rolled back with whatever it was refused. One entry per denied call, action
``access:denied``, outcome ``denied``:

* actor and role: the authenticated caller (agency id or username), or ``anonymous`` with what the call
  *claimed* in ``details.claimed`` (a signature key id and its agency, or that a session token was sent);
* countries: the caller's country (an anonymous call: the country of the agency whose key it claimed, so
  that country's auditor sees attempts on its agencies' keys; none if it claimed nothing known);
* object: the route's first path parameter (``message_id`` -> object type ``message``), or the route;
* details: the route (method and path template), every path parameter, the error's slug and status, and
  the problem's ``reason`` when it names one (which check of a signed request failed: nonce, unlisted-node, …).

Flooding: a storm of denials must not become a storm of writes. :class:`DenialThrottle` keeps a token
bucket per caller (per source address for anonymous calls, an IPv6 address by its /64): ``per_minute``
entries a minute, a burst of as many; beyond it a denial is not written but counted, and the next entry
written for that caller carries ``details.suppressed``, the number left out since the previous one (per API process).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.models import AuditEntry
from broker.audit.service import Actor, record
from broker.limits import RateLimiter, source_key

__all__ = ["ANONYMOUS", "Denial", "DenialThrottle", "record_denial"]

log = logging.getLogger("spoc.audit")
ANONYMOUS = "anonymous"
_MAX_COUNTED = 10_000  # callers whose suppressed denials are counted; beyond it the counts start over


@dataclass(frozen=True)
class Denial:
    """One refused call, as the edge saw it."""

    actor: Actor
    countries: tuple[str, ...]
    method: str
    route: str  # the path template, e.g. /v1/cp/messages/{message_id}/decisions
    params: dict[str, str]
    error: str  # the problem's slug
    status: int
    kind: str  # the error class, e.g. FourEyesRefused
    claimed: dict[str, str] = field(default_factory=dict)
    source: str = ""  # the peer address, for throttling anonymous calls
    reason: str | None = None  # the problem's ``reason`` (e.g. nonce, unlisted-node), when it names one

    @property
    def throttle_key(self) -> str:
        if self.actor.role == ANONYMOUS:
            return f"denied:{ANONYMOUS}:{source_key(self.source)}"
        return f"denied:{self.actor.role}:{self.actor.name}"


class DenialThrottle:
    """How many denials per caller are written (see the module docstring); thread-safe."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, key: str) -> int | None:
        """None if this denial is not to be written; else how many were left out before it."""
        if not self._limiter.take(key).allowed:
            with self._lock:
                if len(self._suppressed) >= _MAX_COUNTED and key not in self._suppressed:
                    self._suppressed.clear()
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        with self._lock:
            return self._suppressed.pop(key, 0)


def record_denial(session: Session, denial: Denial, *, suppressed: int = 0) -> AuditEntry:
    """Add the ``access:denied`` entry of ``denial`` to ``session`` (the caller commits)."""
    if denial.params:
        name, value = next(iter(denial.params.items()))
        object_type, object_id = name.removesuffix("_id")[:32], value[:64]
    else:
        object_type, object_id = "route", denial.route[:64]
    details: dict[str, Any] = {
        "route": f"{denial.method} {denial.route}"[:300],
        "params": {k[:32]: v[:64] for k, v in list(denial.params.items())[:8]},
        "error": denial.error,
        "status": denial.status,
        "kind": denial.kind,
    }
    if denial.reason:
        details["reason"] = denial.reason[:64]
    if denial.claimed:
        details["claimed"] = {k: v[:64] for k, v in denial.claimed.items()}
    if suppressed:
        details["suppressed"] = suppressed
    return record(
        session,
        actor=denial.actor,
        action=AuditAction.ACCESS_DENIED,
        object_type=object_type,
        object_id=object_id,
        countries=denial.countries,
        outcome="denied",
        details=details,
    )
