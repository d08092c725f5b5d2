"""How a message is shown to an officer (the API's JSON and the UI's pages use the same dictionaries).

Metadata only — never content: the routing header's fields, urgency with its Art. 4(4) reason and
explanation, the deadline as time left (frozen while the clock is stopped), assignment and amendments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.db import utcnow
from broker.messages.clock import clock_of
from broker.messages.deadlines import describe
from broker.messages.models import Message
from schemas.codelists import label

OWN_INITIATIVE = "notification"


def usernames(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(User.id, User.username).where(User.id.in_(wanted))).all()
    return {int(user_id): str(username) for user_id, username in rows}


def summary(
    message: Message,
    *,
    now: datetime | None = None,
    names: dict[int, str] | None = None,
    priority: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``message`` as an officer sees it; ``priority``: its envelope's ``header.priority`` if the caller read
    it without the envelope (:func:`summaries`), else it is read from the envelope."""
    if priority is None:
        priority = message.envelope.get("header", {}).get("priority", {}) if message.envelope else {}
    reason = priority.get("urgency_reason")
    clock = clock_of(message)
    now = now or utcnow()
    remaining = clock.remaining(now) if clock is not None else None
    return {
        "message_id": message.id,
        "conversation_id": message.conversation_id,
        "in_reply_to": message.in_reply_to,
        "type": message.type,
        "own_initiative": message.type == OWN_INITIATIVE,
        "state": message.state,
        "sender_agency": message.sender_agency,
        "origin_country": message.origin_country,
        "destination_country": message.destination_country,
        "destination_agency": message.destination_agency,
        "category": message.category,
        "classification": message.classification,
        "handling_codes": message.handling_codes,
        "priority_level": message.priority_level,
        "urgency_reason": reason,
        "urgency_reason_label": label("urgency_reasons", reason) if reason else None,
        "urgency_explanation": priority.get("urgency_explanation"),
        "information_access": priority.get("information_access"),
        "deadline_at": message.deadline_at.isoformat() if message.deadline_at else None,
        "deadline_paused": bool(clock and clock.paused),
        "time_left": describe(remaining) if remaining is not None else None,
        "overdue": bool(remaining is not None and remaining.total_seconds() < 0),
        "deadline_used": round(clock.used(now), 3) if clock is not None else None,
        "received_at": message.received_at.isoformat(),
        "assigned_to": (names or {}).get(message.assigned_to) if message.assigned_to else None,
        "supersedes": message.supersedes,
        "content_deleted": message.content_deleted_at is not None,
        "content_deleted_at": message.content_deleted_at.isoformat() if message.content_deleted_at else None,
    }


def summaries(session: Session, messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The summaries of a page of messages: the envelopes not loaded (a queue's, ``review.queues.queue``) give
    their priority in one query for the page, never an envelope each."""
    names = usernames(session, (m.assigned_to for m in messages))
    now = utcnow()
    priorities = _priorities(session, [m.id for m in messages if "envelope" not in m.__dict__])
    return [summary(m, now=now, names=names, priority=priorities.get(m.id)) for m in messages]


def _priorities(session: Session, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``header.priority`` of the envelopes of ``ids`` ({} for an envelope without one), read in the database."""
    if not ids:
        return {}
    priority = Message.envelope["header"]["priority"]
    rows = session.execute(select(Message.id, priority).where(Message.id.in_(ids))).all()
    return {str(message_id): dict(value or {}) for message_id, value in rows}
