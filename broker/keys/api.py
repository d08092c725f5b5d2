"""Key registry over HTTP: every party's key history; agencies publish their next key; admins revoke."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from broker.audit.service import Actor
from broker.crypto import PublicKey
from broker.deps import Admin, CurrentAgency, DbSession, request_id
from broker.errors import NotFound
from broker.keys.service import register_agency_key, registry, revoke

router = APIRouter(tags=["keys"])


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jwk: dict[str, Any]


class Revocation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


@router.get("/v1/directory/parties/{party_id}/keys", operation_id="get_party_key_registry")
def get_party_key_registry(party_id: str, session: DbSession) -> list[dict[str, object]]:
    """Every key the party has had, with status (active, retired, revoked) and times."""
    rows = registry(session, party_id)
    if not rows:
        raise NotFound(f"no party {party_id}")
    return rows


@router.post("/v1/keys", status_code=201, operation_id="publish_agency_key")
def publish_agency_key(
    body: NewKey, request: Request, session: DbSession, agency: CurrentAgency
) -> dict[str, object]:
    """Publish the agency's next key (signed with its current one); the previous key of that use retires."""
    key = PublicKey.from_jwk(body.jwk)
    register_agency_key(
        session, agency_id=agency.id, key=key, actor=Actor(agency.id, "agency", request_id(request))
    )
    return {"kid": key.kid, "use": key.use, "status": "active"}


@router.post("/v1/admin/keys/{kid}/revoke", operation_id="revoke_key")
def revoke_key(
    kid: str, body: Revocation, request: Request, session: DbSession, admin: Admin
) -> dict[str, object]:
    """Revoke a key with a reason: anything it signs after now is refused."""
    row = revoke(session, kid=kid, reason=body.reason, actor=admin.actor(request))
    return {
        "kid": row.kid,
        "status": row.status,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }
