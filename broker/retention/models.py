"""Legal holds and compliance reviews of exchanges (conversations). Neither holds content: who, when, why.

A hold row is never deleted: releasing it stamps ``released_at``, so the history of holds stays readable beside
the audit log. A conversation is *held* while it has at least one hold not released. A review row records one
decision (``keep``, ``delete``, ``hold``) taken on an exchange after it ended.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, UTCDateTime, utcnow


class RetentionHold(Base):
    """A legal hold on a conversation: its content is not deleted while the hold stands."""

    __tablename__ = "retention_holds"
    __table_args__ = (Index("ix_retention_holds_active", "conversation_id", "released_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(Text)
    set_by: Mapped[str] = mapped_column(String(64))
    set_by_role: Mapped[str] = mapped_column(String(16))
    # The officer's contact point, or the auditor's country ("" for a regional auditor): whose hold it is.
    scope: Mapped[str] = mapped_column(String(32))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    released_by: Mapped[str | None] = mapped_column(String(64), default=None)
    release_reason: Mapped[str | None] = mapped_column(Text, default=None)


class RetentionReview(Base):
    """One compliance review of an ended exchange: keep (until its period ends), delete now, or hold."""

    __tablename__ = "retention_reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(36), index=True)
    decision: Mapped[str] = mapped_column(String(8))  # keep | delete | hold
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    reviewed_by: Mapped[str] = mapped_column(String(64))
    reviewed_by_role: Mapped[str] = mapped_column(String(16))
    reviewed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the exchange had ended at the time of the review: new activity after it calls for a new review.
    exchange_ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
