"""Every hop a node sent or received: the evidence of a border crossing, kept on both sides."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, UTCDateTime, utcnow


class Hop(Base):
    """One message crossing between this node and a peer, in one direction.

    The same message digest is recorded by both nodes (and in both audit logs), so a regional auditor can
    reconcile what A sent to B with what B received from A. ``receipt`` is the receiving node's signed
    transport receipt (kept by the sender as proof of delivery, by the receiver as what it answered, so a
    retried hop gets the same answer); ``sender_key`` is the origin contact point's statement vouching for
    the originator's key (``broker.hop.evidence``)."""

    __tablename__ = "hops"
    __table_args__ = (UniqueConstraint("message_id", "direction"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(36), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # "out" | "in"
    peer_node: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(80))
    sender_key: Mapped[str] = mapped_column(Text)
    receipt: Mapped[str | None] = mapped_column(Text, default=None)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Sending side only: retried with backoff until receipted; after the last attempt it is dead-lettered to
    # the origin's officers (``broker.hop.outbound``). ``next_attempt_at`` doubles as the lease of a claimed hop.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    dead_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
