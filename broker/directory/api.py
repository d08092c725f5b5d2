"""The public directory: countries, contact points, agencies and every party's public keys (JWKS)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from broker.deps import DbSession
from broker.directory.models import Agency, ContactPoint, Country
from broker.errors import NotFound
from broker.keys.service import public_jwks

router = APIRouter(prefix="/v1/directory", tags=["directory"])


@router.get("/countries", operation_id="list_countries")
def list_countries(session: DbSession) -> list[dict[str, Any]]:
    cps = {cp.country: cp.id for cp in session.scalars(select(ContactPoint))}
    return [
        {"code": c.code, "name": c.name, "contact_point": cps.get(c.code)}
        for c in session.scalars(select(Country).order_by(Country.code))
    ]


@router.get("/agencies", operation_id="list_agencies")
def list_agencies(session: DbSession, country: str | None = None) -> list[dict[str, Any]]:
    query = select(Agency).where(Agency.active.is_(True)).order_by(Agency.id)
    if country:
        query = query.where(Agency.country == country.upper())
    return [
        {"id": a.id, "country": a.country, "kind": a.kind, "name": a.name, "accreditation": a.accreditation}
        for a in session.scalars(query)
    ]


@router.get("/parties/{party_id}/jwks", operation_id="get_party_jwks")
def get_party_jwks(party_id: str, session: DbSession) -> dict[str, Any]:
    """The active public keys of a party (agency, contact point or the log signer) as an RFC 7517 JWK Set."""
    jwks = public_jwks(session, party_id)
    if not jwks["keys"]:
        raise NotFound(f"no party {party_id}")
    return jwks
