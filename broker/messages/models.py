"""Messages, their chain of custody, four-eyes approvals, idempotency records, and what review adds:
deadline events, requests for onward dissemination (H2), acknowledgements of conditions (H3) and the
notifications officers and supervisors see."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, JSONType, UTCDateTime, utcnow


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # header.message_id
    conversation_id: Mapped[str] = mapped_column(String(36), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(36), index=True, default=None)
    type: Mapped[str] = mapped_column(String(16))
    # An agency id, or a contact point's id for information an officer provides on its own initiative.
    sender_agency: Mapped[str] = mapped_column(String(32), index=True)
    origin_country: Mapped[str] = mapped_column(String(2), index=True)
    destination_country: Mapped[str] = mapped_column(String(2), index=True)
    # No foreign key: the addressed agency may live on another node (DESIGN §8), which checks it on arrival.
    destination_agency: Mapped[str | None] = mapped_column(String(32), default=None)
    category: Mapped[str] = mapped_column(String(64))
    classification: Mapped[str] = mapped_column(String(16))
    handling_codes: Mapped[list[str]] = mapped_column(JSONType)
    priority_level: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(24), index=True)
    envelope: Mapped[dict[str, Any]] = mapped_column(JSONType)
    digest: Mapped[str] = mapped_column(String(80))  # sha-256 of the canonical signing view
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The deadline clock (broker.messages.deadlines): started at the first submission, stopped while a
    # clarification is pending, lengthened by recorded extensions.
    clock_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    paused_seconds: Mapped[int] = mapped_column(Integer, default=0)
    extended_seconds: Mapped[int] = mapped_column(Integer, default=0)
    deadline_warn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    deadline_warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    deadline_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # The returned message this one amends (clarification loop); same conversation.
    supersedes: Mapped[str | None] = mapped_column(ForeignKey("messages.id"), index=True, default=None)
    assigned_to: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    # The officer who wrote an own-initiative provision (they cannot approve it themselves).
    composed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)

    # Retention (``broker.retention``): when the content was deleted, irrevocably, and why (``period``: its
    # retention period ended; ``review``: a compliance review decided so). The row then keeps only routing
    # metadata: the envelope is its routing header without free text, and nothing can decrypt or rebuild it.
    content_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    content_deletion: Mapped[str | None] = mapped_column(String(8), default=None)

    # Retention's candidates (``broker.retention.exchanges``): messages with content, by last change; the
    # messages whose content was deleted, ever more of them, are not in it.
    __table_args__ = (
        Index(
            "ix_messages_retention",
            "updated_at",
            postgresql_where=text("content_deleted_at IS NULL"),
            sqlite_where=text("content_deleted_at IS NULL"),
        ),
    )

    # concurrent decisions on one message: one wins, the other gets a conflict
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy reads this class attribute


class CustodyStep(Base):
    """One hop of the chain of custody: who did what to the message, countersigned by that party."""

    __tablename__ = "custody_steps"
    __table_args__ = (UniqueConstraint("message_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    party: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(24), default=None)
    to_state: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    refusal_ground: Mapped[str | None] = mapped_column(String(64), default=None)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    signature: Mapped[str] = mapped_column(Text)


class Approval(Base):
    """Four eyes: one row per officer approval at a stage; a unique key makes the same officer twice impossible."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("message_id", "stage", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), index=True)
    stage: Mapped[str] = mapped_column(String(16))  # origin | destination
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The approver's role and clearance when approving: four eyes is judged on these, never on the
    # account as it is today (a later promotion must not upgrade an earlier approval).
    role: Mapped[str] = mapped_column(String(16))
    clearance: Mapped[str] = mapped_column(String(16))


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"

    agency_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    body_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeadlineEvent(Base):
    """Everything that happened to a message's deadline: set, paused, resumed, extended, warned, breached."""

    __tablename__ = "deadline_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)  # after the event
    seconds: Mapped[int | None] = mapped_column(Integer, default=None)  # length of a pause or extension
    # An extension's code of ``deadline_extension_reasons`` (Art. 5(2)); what Art. 18(d) statistics count.
    reason_code: Mapped[str | None] = mapped_column(String(64), default=None)


class DisseminationRequest(Base):
    """An agency's request to pass H2 information on, and the provider contact point's answer."""

    __tablename__ = "dissemination_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), index=True)  # the H2 message
    requested_by: Mapped[str] = mapped_column(String(32))  # the agency that received it
    recipient_country: Mapped[str] = mapped_column(String(2))
    recipient_agency: Mapped[str | None] = mapped_column(String(32), default=None)
    purpose: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(8), default="pending")  # pending | granted | denied
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    decided_by: Mapped[str | None] = mapped_column(String(64), default=None)
    decision_reason: Mapped[str | None] = mapped_column(Text, default=None)
    # A request that crossed between nodes (requester's agency on one, the provider on the other): the id of the
    # signed event that carried it, the same on both nodes, so the provider's answer finds it
    # (``broker.hop.events``). Null for a request made and answered on one node.
    event_id: Mapped[str | None] = mapped_column(String(36), default=None, unique=True)


class ConditionsAcknowledgement(Base):
    """An officer acknowledged the provider's H3 conditions of a message before reading it."""

    __tablename__ = "conditions_acknowledgements"
    __table_args__ = (UniqueConstraint("message_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewNotification(Base):
    """Something an officer (or only supervisors, or one officer) of a contact point should look at."""

    __tablename__ = "review_notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_point_id: Mapped[str] = mapped_column(ForeignKey("contact_points.id"), index=True)
    audience: Mapped[str] = mapped_column(String(16))  # officer | supervisor
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    message_id: Mapped[str | None] = mapped_column(ForeignKey("messages.id"), default=None)
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    dismissed_by: Mapped[str | None] = mapped_column(String(64), default=None)
