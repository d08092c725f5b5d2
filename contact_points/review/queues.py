"""The contact point's two queues: most urgent deadline first, filtered, counted.

By default a queue holds what awaits this contact point's review (``origin_review`` outbound,
``destination_review`` inbound); ``status`` shows any other state of the same scope (``all`` for every
state). Messages without a deadline (answers, notifications) come after those with one, oldest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session, defer

from broker.accounts.models import User
from broker.db import utcnow
from broker.messages.models import Message
from contact_points.review.scope import AWAITING, Direction, in_scope, officer_contact_point

ALL = "all"


@dataclass(frozen=True)
class QueueFilter:
    """What an officer narrows a queue to; ``None`` means no restriction (status: awaiting review)."""

    status: str | None = None
    priority: str | None = None
    country: str | None = None  # the other country: destination of outbound, origin of inbound
    category: str | None = None
    classification: str | None = None
    assigned: str | None = None  # "me" | "unassigned"

    def query_string(self) -> str:
        from urllib.parse import urlencode

        return urlencode({f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)})


@dataclass(frozen=True)
class Counts:
    """What the queue header shows: per state in scope, and of those awaiting review, urgent and overdue."""

    by_state: dict[str, int]
    awaiting: int
    urgent: int
    overdue: int
    matching: int


def _where(
    user: User, direction: Direction, filters: QueueFilter, cp_condition: ColumnElement[bool]
) -> list[ColumnElement[bool]]:
    where = [cp_condition]
    if filters.status != ALL:
        where.append(Message.state == (filters.status or AWAITING[direction]))
    if filters.priority:
        where.append(Message.priority_level == filters.priority)
    if filters.country:
        other = Message.destination_country if direction == "outbound" else Message.origin_country
        where.append(other == filters.country)
    if filters.category:
        where.append(Message.category == filters.category)
    if filters.classification:
        where.append(Message.classification == filters.classification)
    if filters.assigned == "me":
        where.append(Message.assigned_to == user.id)
    elif filters.assigned == "unassigned":
        where.append(Message.assigned_to.is_(None))
    return where


def _ordered(query: Select[Message]) -> Select[Message]:
    return query.order_by(Message.deadline_at.is_(None), Message.deadline_at, Message.received_at)


def queue(
    session: Session,
    user: User,
    direction: Direction,
    *,
    limit: int = 100,
    offset: int = 0,
    filters: QueueFilter | None = None,
) -> Sequence[Message]:
    """The officer's contact point's queue, most urgent deadline first.

    The envelopes stay in the database (a queue shows metadata: ``present.summaries`` reads the one part of
    the envelope it shows, the priority, with one query for the page); ``message.envelope`` still loads an
    envelope if read."""
    cp = officer_contact_point(session, user)
    where = _where(user, direction, filters or QueueFilter(), in_scope(cp, direction))
    query = _ordered(select(Message).where(*where)).options(defer(Message.envelope))
    return session.scalars(query.limit(limit).offset(offset)).all()


def counts(
    session: Session,
    user: User,
    direction: Direction,
    *,
    filters: QueueFilter | None = None,
    now: datetime | None = None,
) -> Counts:
    cp = officer_contact_point(session, user)
    scope = in_scope(cp, direction)
    by_state = {
        str(state): int(n)
        for state, n in session.execute(
            select(Message.state, func.count()).where(scope).group_by(Message.state)
        ).all()
    }
    awaiting = Message.state == AWAITING[direction]
    urgent = session.scalar(
        select(func.count()).select_from(Message).where(scope, awaiting, Message.priority_level == "urgent")
    )
    overdue = session.scalar(
        select(func.count())
        .select_from(Message)
        .where(scope, awaiting, Message.paused_at.is_(None), Message.deadline_at < (now or utcnow()))
    )
    matching = session.scalar(
        select(func.count())
        .select_from(Message)
        .where(*_where(user, direction, filters or QueueFilter(), scope))
    )
    return Counts(
        by_state=by_state,
        awaiting=by_state.get(str(AWAITING[direction]), 0),
        urgent=int(urgent or 0),
        overdue=int(overdue or 0),
        matching=int(matching or 0),
    )
