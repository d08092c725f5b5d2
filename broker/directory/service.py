"""Directory look-ups and agency credentials."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from broker.directory.models import Agency, Agreement, ContactPoint
from broker.errors import NotFound


def contact_point_for(session: Session, country: str) -> ContactPoint:
    cp = session.scalar(select(ContactPoint).where(ContactPoint.country == country))
    if cp is None:
        raise NotFound(f"no contact point for country {country}")
    return cp


def get_agency(session: Session, agency_id: str) -> Agency:
    agency = session.get(Agency, agency_id)
    if agency is None or not agency.active:
        raise NotFound(f"no agency {agency_id}")
    return agency


def agreements_between(session: Session, a: str, b: str, *, at: datetime) -> list[Agreement]:
    lo, hi = sorted((a, b))
    rows = session.scalars(
        select(Agreement).where(
            Agreement.country_a == lo,
            Agreement.country_b == hi,
            Agreement.active.is_(True),
            Agreement.valid_from <= at,
            or_(Agreement.valid_until.is_(None), Agreement.valid_until > at),
        )
    ).all()
    return list(rows)
