"""Officer, supervisor, auditor and admin accounts and their sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, UTCDateTime, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))  # officer | supervisor | auditor | admin
    contact_point_id: Mapped[str | None] = mapped_column(ForeignKey("contact_points.id"), default=None)
    # For auditors: the country they oversee (national) or None (regional).
    country: Mapped[str | None] = mapped_column(String(2), default=None)
    clearance: Mapped[str] = mapped_column(String(16), default="UNCLASSIFIED")
    # Failed logins since ``failures_since``; a count older than the failure window starts again (service).
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    failures_since: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Optional second factor: the RFC 6238 secret sealed under the master key, and the last time step
    # used (a code is accepted once).
    totp_secret: Mapped[str | None] = mapped_column(Text, default=None)
    totp_last_step: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), default=None
    )


class UserSession(Base):
    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
