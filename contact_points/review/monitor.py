"""The deadline monitor: warn at 75 % of a request's time, escalate to supervisors when it is breached.

Run by the beat task ``spoc.review.deadlines`` (``workers.review_tasks``). Idempotent: a message is warned
once and escalated once (``deadline_warned_at``, ``deadline_breached_at``; an extension that moves the
deadline away clears them). A stopped clock (clarification pending) is neither warned nor escalated.
Rows are taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two monitors never notify twice.

Who is told: the contact point that holds the message now — the origin contact point while it is in
outbound review, the destination contact point after that (it owes the answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.db import utcnow
from broker.messages.clock import clock_of, record_deadline_event
from broker.messages.deadlines import describe
from broker.messages.models import Message
from broker.messages.notifications import notify
from broker.messages.states import CLOCK_RUNNING, State

MONITOR = Actor("deadline-monitor", "system")
_RUNNING = [str(s) for s in CLOCK_RUNNING]


@dataclass(frozen=True)
class MonitorRun:
    warned: int
    breached: int


def responsible_contact_point(message: Message) -> str:
    country = message.origin_country if message.state == State.ORIGIN_REVIEW else message.destination_country
    return f"{country}-SPOC"


def _due(session: Session, *conditions: ColumnElement[bool], limit: int) -> list[Message]:
    query = (
        select(Message)
        .where(Message.state.in_(_RUNNING), Message.paused_at.is_(None), *conditions)
        .order_by(Message.deadline_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query).all())


def check_deadlines(session: Session, *, now: datetime | None = None, limit: int = 500) -> MonitorRun:
    """Warn and escalate what is due at ``now``; returns how many of each were raised."""
    now = now or utcnow()
    warned = 0
    for message in _due(
        session, Message.deadline_warned_at.is_(None), Message.deadline_warn_at <= now, limit=limit
    ):
        _warn(session, message, now)
        warned += 1
    breached = 0
    for message in _due(
        session, Message.deadline_breached_at.is_(None), Message.deadline_at <= now, limit=limit
    ):
        _escalate(session, message, now)
        breached += 1
    session.flush()
    return MonitorRun(warned, breached)


def _label(message: Message) -> str:
    return f"{message.priority_level} {message.type} {message.id} from {message.sender_agency}"


def _warn(session: Session, message: Message, now: datetime) -> None:
    clock = clock_of(message)
    if clock is None:
        return
    message.deadline_warned_at = now
    left = describe(clock.remaining(now))
    record_deadline_event(
        session, message, "warned", actor=MONITOR, reason=f"75 % of the time used; {left} left"
    )
    record(
        session,
        actor=MONITOR,
        action=AuditAction.DEADLINE_WARNED,
        object_type="message",
        object_id=message.id,
        countries=[message.origin_country, message.destination_country],
        details={"deadline_at": message.deadline_at.isoformat() if message.deadline_at else None},
    )
    notify(
        session,
        contact_point_id=responsible_contact_point(message),
        kind="deadline-warning",
        message_id=message.id,
        text=f"Deadline warning: {_label(message)} is due in {left}",
    )


def _escalate(session: Session, message: Message, now: datetime) -> None:
    clock = clock_of(message)
    if clock is None:
        return
    message.deadline_breached_at = now
    late = describe(clock.remaining(now))
    cp = responsible_contact_point(message)
    record_deadline_event(
        session, message, "breached", actor=MONITOR, reason=f"escalated to {cp} supervisors"
    )
    record(
        session,
        actor=MONITOR,
        action=AuditAction.DEADLINE_BREACHED,
        object_type="message",
        object_id=message.id,
        countries=[message.origin_country, message.destination_country],
        details={"deadline_at": message.deadline_at.isoformat() if message.deadline_at else None, "to": cp},
    )
    notify(
        session,
        contact_point_id=cp,
        kind="deadline-breach",
        audience="supervisor",
        message_id=message.id,
        text=f"Deadline breached: {_label(message)}, {late}",
    )
