"""The contact point's case file index: keyed hashes of selectors, which messages were cross-checked, and
the links found. No table here holds a selector in clear (``broker.crosscheck.normalise``).

Each table is keyed by message id, so that deleting a message's content (retention, Art. 16(3)) removes
its part of the index with one ``DELETE ... WHERE message_id = ...`` per table: ``crosscheck_selectors``
holds everything that could be matched again; ``crosscheck_links`` and ``crosscheck_scans`` hold only
which messages were linked and why (kinds of selector), which is metadata.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, JSONType, UTCDateTime, utcnow


class CrosscheckSecret(Base):
    """A contact point's HMAC key for selector hashes, sealed under the node's master key.

    One per contact point held on this node, made on first use. ``sealed`` is
    ``MasterKey.encrypt(secret, context="crosscheck:<contact point>")``: copied onto another contact
    point's row it does not open.
    """

    __tablename__ = "crosscheck_secrets"

    contact_point_id: Mapped[str] = mapped_column(ForeignKey("contact_points.id"), primary_key=True)
    sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CrosscheckScan(Base):
    """A message a contact point has cross-checked (once): ``structured``, ``text`` (nothing to extract)
    or ``unreadable`` (its keys do not open the payload)."""

    __tablename__ = "crosscheck_scans"

    contact_point_id: Mapped[str] = mapped_column(ForeignKey("contact_points.id"), primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), primary_key=True, index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    selectors: Mapped[int] = mapped_column(Integer, default=0)
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CrosscheckPending(Base):
    """A message the cross-check has to look at: queued by database triggers when the message is stored and
    when a contact point adds a custody step to it (migration 0016), taken out by the batch once no held
    contact point still has to scan it. No foreign key: a row whose message is gone is dropped by the batch."""

    __tablename__ = "crosscheck_pending"

    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The message's arrival: batches take the earliest first, from this index.
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # Raised by the PostgreSQL triggers when the message is queued again while queued: a batch takes the row
    # out only if it is unchanged since it read it (a custody step added meanwhile keeps it queued).
    requeued: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class SelectorHash(Base):
    """HMAC-SHA256 (hex) of one selector of one message, under its contact point's key.

    ``partial``: the selector leaves out a year of birth the content gives; two partial hashes never link.
    """

    __tablename__ = "crosscheck_selectors"
    __table_args__ = (Index("ix_crosscheck_selectors_lookup", "contact_point_id", "kind", "digest"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_point_id: Mapped[str] = mapped_column(ForeignKey("contact_points.id"))
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    digest: Mapped[str] = mapped_column(String(64))
    partial: Mapped[bool] = mapped_column(Boolean, default=False)


class CrosscheckLink(Base):
    """Two messages of one contact point that share a selector: ``message_id`` was cross-checked when
    ``linked_message_id`` was already held. ``basis``: the kinds of selector that matched (never values)."""

    __tablename__ = "crosscheck_links"
    __table_args__ = (UniqueConstraint("contact_point_id", "message_id", "linked_message_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_point_id: Mapped[str] = mapped_column(ForeignKey("contact_points.id"))
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), index=True)
    linked_message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), index=True)
    basis: Mapped[list[str]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
