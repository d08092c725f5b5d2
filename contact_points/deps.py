"""Typed dependencies of the contact points' API, beside ``broker.deps``.

``CpOfficer`` is ``broker.deps.Officer``: officers and supervisors, with the CSRF rule of every API
dependency (a state-changing call authenticated by the UI's session cookie must carry the session's CSRF
token in ``X-CSRF-Token``; see ``broker.deps.api_principal``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from broker.deps import CSRF_HEADER, SAFE_METHODS, Officer, Principal, csrf_ok, require

__all__ = ["CSRF_HEADER", "SAFE_METHODS", "CpOfficer", "Supervisor", "csrf_ok"]

CpOfficer = Officer
Supervisor = Annotated[Principal, Depends(require("supervisor"))]
