"""Deliveries to agencies. One row per (agency, message): delivery is de-duplicated by construction.

A row is the message's delivery to one agency over one channel:

- ``pull``: the row *is* the agency's inbox item. It is ``delivered`` when written; the agency leases
  it (``leased_until``: hidden from other readers until then) and acknowledges it with a signed receipt.
- ``push``: the worker POSTs it to the agency's registered endpoint. It stays ``pending`` (with
  ``next_attempt_at``) until the endpoint answers 2xx with a valid signed receipt, then it is
  ``delivered`` and acknowledged at once; after the last attempt it is ``dead`` (dead-lettered into the
  destination officers' queue with ``last_error``), from where an officer retries or re-routes it.
- ``superseded``: an officer re-routed the message elsewhere, or its content was deleted under the retention
  rules before the agency took it (``broker.retention.deletion``); this row is kept as history.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, UTCDateTime, utcnow


class Channel(StrEnum):
    PULL = "pull"
    PUSH = "push"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    SUPERSEDED = "superseded"


class InboxItem(Base):
    __tablename__ = "inbox_items"
    __table_args__ = (
        UniqueConstraint("agency_id", "message_id"),
        # the push dispatcher's scan: due pending pushes, oldest first
        Index("ix_inbox_items_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), index=True)
    delivered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    receipt: Mapped[str | None] = mapped_column(Text, default=None)  # the agency's signed receipt (JWS)
    channel: Mapped[str] = mapped_column(String(8), default=Channel.PULL, server_default=Channel.PULL)
    status: Mapped[str] = mapped_column(
        String(16), default=DeliveryStatus.DELIVERED, server_default=DeliveryStatus.DELIVERED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    lease_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
