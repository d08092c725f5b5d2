"""Every hop a node sent or received: the evidence of a border crossing, kept on both sides."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, UTCDateTime, utcnow


class Hop(Base):
    """One message, or one signed event about a message, crossing between this node and a peer.

    A *message hop* (``event_id`` null) carries an envelope and its custody; an *event hop* carries one
    contact point's signed statement about a message that crossed before (a refusal, a grant, a deadline
    extension…: ``broker.hop.events``). The same digest is recorded by both nodes (and in both audit logs),
    so a regional auditor can reconcile what A sent to B with what B received from A: the message's digest
    for a message hop, the digest of the signed event statement for an event hop. ``receipt`` is the
    receiving node's signed transport receipt (kept by the sender as proof of delivery, by the receiver as
    what it answered, so a retried hop gets the same answer); ``sender_key`` is the origin contact point's
    statement vouching for the originator's key (``broker.hop.evidence``), on message hops only; ``event``
    is the signed event exactly as made (sender) or as it came (receiver), on event hops only."""

    __tablename__ = "hops"
    __table_args__ = (
        # One message hop per message and direction (the receiver de-duplicates by message id); one event hop
        # per event id and direction (by event id). Partial: the event hops of a message share its id.
        Index(
            "uq_hops_message_id",
            "message_id",
            "direction",
            unique=True,
            postgresql_where="event_id IS NULL",
            sqlite_where="event_id IS NULL",
        ),
        UniqueConstraint("event_id", "direction"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(36), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # "out" | "in"
    peer_node: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(80))
    sender_key: Mapped[str | None] = mapped_column(Text, default=None)
    receipt: Mapped[str | None] = mapped_column(Text, default=None)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Event hops only: the event's id (idempotency across nodes), its kind and the signed token.
    event_id: Mapped[str | None] = mapped_column(String(36), default=None)
    event_kind: Mapped[str | None] = mapped_column(String(32), default=None)
    event: Mapped[str | None] = mapped_column(Text, default=None)
    # Sending side only: retried with backoff until receipted; after the last attempt it is dead-lettered to
    # the origin's officers (``broker.hop.outbound``). ``next_attempt_at`` doubles as the lease of a claimed hop.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    dead_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
