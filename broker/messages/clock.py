"""The deadline clock of a message, persisted: start, pause, resume, extend, and its recorded history.

The arithmetic is ``broker.messages.deadlines.Clock`` (pure); this module keeps it on the ``Message`` row
and records every change as a ``DeadlineEvent`` (what the officers' timeline shows) and, for changes a
person or the system made, an audit entry. Functions flush, never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.db import new_row, utcnow
from broker.errors import Conflict
from broker.messages.deadlines import Clock
from broker.messages.models import DeadlineEvent, Message


def _countries(message: Message) -> list[str]:
    return [message.origin_country, message.destination_country]


def clock_of(message: Message) -> Clock | None:
    """The message's deadline clock, or None if it has no deadline (not a request)."""
    if message.deadline_at is None:
        return None
    return Clock(
        started_at=message.clock_started_at or message.received_at,
        deadline_at=message.deadline_at,
        paused_at=message.paused_at,
        paused_seconds=message.paused_seconds or 0,
        extended_seconds=message.extended_seconds or 0,
    )


def set_clock(message: Message, clock: Clock) -> None:
    """Keep ``clock`` on the row, with the time the monitor should warn (indexed: the monitor's query)."""
    message.clock_started_at = clock.started_at
    message.deadline_at = clock.deadline_at
    message.deadline_warn_at = clock.warn_at()
    message.paused_at = clock.paused_at
    message.paused_seconds = clock.paused_seconds
    message.extended_seconds = clock.extended_seconds


def pause_clock(session: Session, message: Message, *, actor: Actor, reason: str | None) -> None:
    clock = clock_of(message)
    if clock is None or clock.paused:
        return
    now = utcnow()
    set_clock(message, clock.pause(now))
    deadline_event(session, message, "paused", actor=actor, reason=reason)
    record(
        session,
        actor=actor,
        action=AuditAction.DEADLINE_PAUSED,
        object_type="message",
        object_id=message.id,
        countries=_countries(message),
        details={"remaining_seconds": int(clock.remaining(now).total_seconds())},
    )


def extend_deadline(
    session: Session,
    message: Message,
    *,
    by: timedelta,
    reason_code: str,
    reason: str | None,
    actor: Actor,
) -> Clock:
    """Lengthen the deadline (recorded with its coded reason, audited); a warning or breach already raised
    is cleared if the new deadline puts the message back before it. ``reason_code`` is a code of
    ``deadline_extension_reasons`` (Art. 5(2)), kept on the event for the Art. 18(d) statistics."""
    clock = clock_of(message)
    if clock is None:
        raise Conflict(f"message {message.id} has no deadline to extend (only requests have one)")
    longer = clock.extend(by)
    set_clock(message, longer)
    now = utcnow()
    if message.deadline_warned_at is not None and longer.warn_at() > now:
        message.deadline_warned_at = None
    if message.deadline_breached_at is not None and longer.deadline_at > now:
        message.deadline_breached_at = None
    seconds = int(by.total_seconds())
    deadline_event(
        session, message, "extended", actor=actor, reason=reason, seconds=seconds, reason_code=reason_code
    )
    record(
        session,
        actor=actor,
        action=AuditAction.DEADLINE_EXTENDED,
        object_type="message",
        object_id=message.id,
        countries=_countries(message),
        details={
            "seconds": seconds,
            "deadline_at": iso(longer.deadline_at),
            "reason_code": reason_code,
            "reason": reason,
        },
    )
    session.flush()
    return longer


def deadline_event(
    session: Session,
    message: Message,
    kind: str,
    *,
    actor: Actor,
    reason: str | None = None,
    seconds: int | None = None,
    reason_code: str | None = None,
) -> None:
    session.add(
        deadline_row(message, kind, actor=actor, reason=reason, seconds=seconds, reason_code=reason_code)
    )


def deadline_row(
    message: Message,
    kind: str,
    *,
    actor: Actor,
    reason: str | None = None,
    seconds: int | None = None,
    reason_code: str | None = None,
) -> DeadlineEvent:
    """One event of the deadline's history, not yet added to a session."""
    return new_row(
        DeadlineEvent,
        message_id=message.id,
        kind=kind,
        at=utcnow(),
        actor=actor.name,
        reason=reason,
        reason_code=reason_code,
        deadline_at=message.deadline_at,
        seconds=seconds,
    )


def record_deadline_event(
    session: Session, message: Message, kind: str, *, actor: Actor, reason: str | None = None
) -> None:
    """Record a warning or a breach (the monitor's part of the deadline's history)."""
    deadline_event(session, message, kind, actor=actor, reason=reason)
    session.flush()


def deadline_events(session: Session, message_id: str) -> Sequence[DeadlineEvent]:
    return session.scalars(
        select(DeadlineEvent).where(DeadlineEvent.message_id == message_id).order_by(DeadlineEvent.id)
    ).all()


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
