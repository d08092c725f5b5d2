"""The directory: countries, their contact points and agencies, and the agreements between countries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, JSONType, UTCDateTime, utcnow


class Country(Base):
    __tablename__ = "countries"

    code: Mapped[str] = mapped_column(String(2), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class ContactPoint(Base):
    __tablename__ = "contact_points"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    country: Mapped[str] = mapped_column(ForeignKey("countries.code"), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Agency(Base):
    __tablename__ = "agencies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    country: Mapped[str] = mapped_column(ForeignKey("countries.code"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    # Highest classification the agency is accredited to send and receive.
    accreditation: Mapped[str] = mapped_column(String(16))
    # Crime categories the agency is competent for (routing suggestions, accreditation check).
    categories: Mapped[list[str]] = mapped_column(JSONType, default=list)
    push_url: Mapped[str | None] = mapped_column(String(500), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Agreement(Base):
    """A bilateral legal basis for exchange. Countries are stored ordered (a < b): agreements are symmetric."""

    __tablename__ = "agreements"
    __table_args__ = (UniqueConstraint("reference"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(200))
    country_a: Mapped[str] = mapped_column(ForeignKey("countries.code"), index=True)
    country_b: Mapped[str] = mapped_column(ForeignKey("countries.code"), index=True)
    categories: Mapped[list[str]] = mapped_column(JSONType)
    max_classification: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
