"""What an exchange is, when it ended, whose it is and when its content is due for deletion: all from stored
metadata (no content is read).

An **exchange** is a conversation: the messages that share a ``conversation_id`` (a request, its answers,
clarifications and amendments). A message is **settled** when the exchange expects nothing more of it: it is
in a final state (``answered``, ``rejected``, ``refused``, ``superseded``), or it is not a request and was
delivered to its agency (an answer, a notification, an acknowledgement: nothing answers those). An exchange
**ended** when every one of its messages is settled, at the last change of state of any of them
(``max(updated_at)``, its ``ended_at``). One that saw no activity for ``retention_idle_days`` counts as ended
then too: a request delivered and never answered must not keep its content for ever.

Its content is **due** for deletion once ``ended_at`` lies further back than its retention period: the longest
of the periods of its messages' categories (``Settings.retention_days``), so that one answer filed under
another category cannot shorten the life of the request. It enters the **review queue** once ``ended_at`` lies
``retention_review_after_days`` back and no review was recorded since it ended.

**Whose it is** (:class:`RetentionScope`): an officer's contact point holds the exchanges of its case file,
as the cross-check defines it (``broker.crosscheck.service``): a message sent from its country, or received by
it (it countersigned a step of it). A national auditor oversees the exchanges touching its country, a
regional auditor all. A ``conversation_id`` is chosen by the sender, so anyone can put a message into any
conversation: an exchange is visible when one of its messages is, but only the visible messages are named to
the caller, and deleting it at once (a review) needs every message of it in the caller's scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, literal, or_, select, true
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.config import Settings
from broker.db import UTCDateTime, utcnow
from broker.directory.models import ContactPoint
from broker.errors import NotFound, NotPermitted
from broker.messages.models import CustodyStep, Message
from broker.messages.states import TERMINAL, State
from broker.retention.models import RetentionHold, RetentionReview

__all__ = [
    "ExchangeMessage",
    "ExchangeView",
    "HoldView",
    "QueueEntry",
    "RetentionScope",
    "conversation_of",
    "due_for_deletion",
    "exchange",
    "held_among",
    "lock_messages",
    "review_queue",
    "settled",
]

OFFICER_ROLES = ("officer", "supervisor")


def settled() -> ColumnElement[bool]:
    """SQL: the message is settled (see the module docstring)."""
    return or_(
        Message.state.in_([str(s) for s in TERMINAL]),
        and_(Message.state == State.DELIVERED, Message.type != "request"),
    )


@dataclass(frozen=True)
class RetentionScope:
    """Whose exchanges a caller may hold, release, review and see in the queue: a contact point's case file
    (``contact_point``), one country's (``country``, a national auditor) or all (both None: a regional auditor).
    """

    contact_point: ContactPoint | None = None
    country: str | None = None

    @classmethod
    def of(cls, session: Session, user: User) -> RetentionScope:
        if user.role in OFFICER_ROLES and user.contact_point_id is not None:
            cp = session.get(ContactPoint, user.contact_point_id)
            if cp is None:
                raise NotPermitted("the officer's contact point does not exist")
            return cls(contact_point=cp)
        if user.role == "auditor":
            return cls(country=user.country)
        raise NotPermitted("retention is for contact-point officers and auditors")

    @property
    def name(self) -> str:
        """The scope as recorded on a hold: the contact point, the country, or "" (regional)."""
        if self.contact_point is not None:
            return self.contact_point.id
        return self.country or ""

    @property
    def countries(self) -> tuple[str, ...]:
        if self.contact_point is not None:
            return (self.contact_point.country,)
        return (self.country,) if self.country else ()

    def visible(self) -> ColumnElement[bool]:
        """SQL over ``Message``: the caller may see this message's metadata for retention."""
        cp = self.contact_point
        if cp is not None:
            received = exists(
                select(CustodyStep.id).where(CustodyStep.message_id == Message.id, CustodyStep.party == cp.id)
            )
            return or_(
                Message.origin_country == cp.country,
                and_(Message.destination_country == cp.country, received),
            )
        if self.country is not None:
            return or_(Message.origin_country == self.country, Message.destination_country == self.country)
        return true()

    def conversations(self) -> Select[str]:
        """The conversations with at least one message visible to the caller."""
        return select(Message.conversation_id).where(self.visible())


def _ended_at() -> ColumnElement[datetime]:
    return func.max(Message.updated_at, type_=UTCDateTime)


def _aggregate(settings: Settings, now: datetime, *within: Select[str] | Sequence[str]) -> Any:
    """Per conversation: when it ended (or last changed), whether it ended, whether content is left, and the
    latest ``ended_at`` its categories' periods allow before its content is due (one subquery)."""
    idle_cutoff = now - timedelta(days=settings.retention_idle_days)
    unsettled = func.sum(case((settled(), 0), else_=1))
    with_content = func.sum(case((Message.content_deleted_at.is_(None), 1), else_=0))
    cutoffs = [
        (Message.category == category, literal(now - timedelta(days=days), UTCDateTime))
        for category, days in sorted(settings.retention_days_by_category.items())
    ]
    default_cutoff = literal(now - timedelta(days=settings.retention_default_days), UTCDateTime)
    # The longest period wins: the earliest cutoff of the conversation's categories.
    cutoff = func.min(case(*cutoffs, else_=default_cutoff) if cutoffs else default_cutoff, type_=UTCDateTime)
    query = select(
        Message.conversation_id.label("conversation_id"),
        _ended_at().label("ended_at"),
        or_(unsettled == 0, _ended_at() <= idle_cutoff).label("ended"),
        with_content.label("with_content"),
        func.count(Message.id).label("messages"),
        cutoff.label("due_cutoff"),
    ).group_by(Message.conversation_id)
    for conversations in within:
        query = query.where(Message.conversation_id.in_(conversations))
    return query.subquery("exchanges")


def _shortest_period(settings: Settings) -> int:
    return min([settings.retention_default_days, *settings.retention_days_by_category.values()])


def _with_content_since(cutoff: datetime) -> Select[str]:
    """The conversations with a message that still holds content and last changed at ``cutoff`` or before.

    A conversation that ended at ``cutoff`` or before has all its messages so (it ended at its latest change),
    so this only narrows what the aggregate must read: through the partial index ``ix_messages_retention``,
    to the candidates instead of every message the node ever held."""
    return select(Message.conversation_id).where(
        Message.content_deleted_at.is_(None), Message.updated_at <= cutoff
    )


def _active_hold(conversation: ColumnElement[str]) -> ColumnElement[bool]:
    return exists(
        select(RetentionHold.id).where(
            RetentionHold.conversation_id == conversation, RetentionHold.released_at.is_(None)
        )
    )


def held_among(session: Session, conversation_ids: Sequence[str]) -> set[str]:
    """The conversations of ``conversation_ids`` under at least one legal hold (one query)."""
    if not conversation_ids:
        return set()
    return set(
        session.scalars(
            select(RetentionHold.conversation_id)
            .where(RetentionHold.conversation_id.in_(conversation_ids), RetentionHold.released_at.is_(None))
            .distinct()
        )
    )


def due_for_deletion(
    session: Session, settings: Settings, *, now: datetime | None = None, limit: int
) -> list[str]:
    """Up to ``limit`` conversations whose content is due for deletion (ended, past their period, content left,
    not held), longest ended first."""
    now = now or utcnow()
    agg = _aggregate(settings, now, _with_content_since(now - timedelta(days=_shortest_period(settings))))
    return list(
        session.scalars(
            select(agg.c.conversation_id)
            .where(
                agg.c.ended,
                agg.c.with_content > 0,
                agg.c.ended_at <= agg.c.due_cutoff,
                ~_active_hold(agg.c.conversation_id),
            )
            .order_by(agg.c.ended_at, agg.c.conversation_id)
            .limit(limit)
        )
    )


@dataclass(frozen=True)
class ExchangeMessage:
    """One message of an exchange, as retention shows it: metadata only."""

    message_id: str
    type: str
    state: str
    origin_country: str
    destination_country: str
    category: str
    classification: str
    received_at: datetime
    content_deleted_at: datetime | None
    content_deletion: str | None


@dataclass(frozen=True)
class QueueEntry:
    """An exchange waiting for its compliance review."""

    conversation_id: str
    ended_at: datetime
    due_at: datetime
    held: bool
    messages: list[ExchangeMessage]

    @property
    def countries(self) -> list[str]:
        return sorted({c for m in self.messages for c in (m.origin_country, m.destination_country)})

    @property
    def categories(self) -> list[str]:
        return sorted({m.category for m in self.messages})


def _messages(
    session: Session, scope: RetentionScope, conversation_ids: Sequence[str]
) -> dict[str, list[Any]]:
    rows = session.execute(
        select(
            Message.conversation_id,
            Message.id,
            Message.type,
            Message.state,
            Message.origin_country,
            Message.destination_country,
            Message.category,
            Message.classification,
            Message.received_at,
            Message.content_deleted_at,
            Message.content_deletion,
        )
        .where(Message.conversation_id.in_(conversation_ids), scope.visible())
        .order_by(Message.received_at, Message.id)
    ).all()
    out: dict[str, list[Any]] = {cid: [] for cid in conversation_ids}
    for row in rows:
        out[row[0]].append(ExchangeMessage(*row[1:]))
    return out


def review_queue(
    session: Session,
    settings: Settings,
    scope: RetentionScope,
    *,
    now: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[QueueEntry]:
    """The exchanges in ``scope`` that ended ``retention_review_after_days`` ago or more, still hold content and
    were not reviewed since they ended; longest ended first."""
    now = now or utcnow()
    review_after = now - timedelta(days=settings.retention_review_after_days)
    agg = _aggregate(settings, now, scope.conversations(), _with_content_since(review_after))
    reviewed = exists(
        select(RetentionReview.id).where(
            RetentionReview.conversation_id == agg.c.conversation_id,
            RetentionReview.reviewed_at >= agg.c.ended_at,
        )
    )
    rows = session.execute(
        select(
            agg.c.conversation_id,
            agg.c.ended_at,
            agg.c.due_cutoff,
            _active_hold(agg.c.conversation_id).label("held"),
        )
        .where(
            agg.c.ended,
            agg.c.with_content > 0,
            agg.c.ended_at <= review_after,
            ~reviewed,
        )
        .order_by(agg.c.ended_at, agg.c.conversation_id)
        .limit(limit)
        .offset(offset)
    ).all()
    messages = _messages(session, scope, [r.conversation_id for r in rows])
    out = []
    for cid, ended_at, due_cutoff, held in rows:
        out.append(QueueEntry(cid, ended_at, ended_at + (now - due_cutoff), bool(held), messages[cid]))
    return out


@dataclass(frozen=True)
class HoldView:
    id: int
    reason: str
    set_by: str
    set_by_role: str
    scope: str
    set_at: datetime


@dataclass(frozen=True)
class ExchangeView:
    """One exchange as its retention stands: visible messages, whether and when it ended, when its content is
    due, its active holds, and whether every message of it is in the caller's scope."""

    conversation_id: str
    ended: bool
    ended_at: datetime
    due_at: datetime | None
    messages: list[ExchangeMessage]
    holds: list[HoldView]
    all_in_scope: bool

    @property
    def held(self) -> bool:
        return bool(self.holds)

    @property
    def countries(self) -> list[str]:
        return sorted({c for m in self.messages for c in (m.origin_country, m.destination_country)})

    @property
    def content_left(self) -> bool:
        return any(m.content_deleted_at is None for m in self.messages)


def exchange(
    session: Session,
    settings: Settings,
    scope: RetentionScope,
    conversation_id: str,
    *,
    now: datetime | None = None,
) -> ExchangeView:
    """The exchange ``conversation_id`` if one of its messages is in ``scope``; NotFound otherwise."""
    now = now or utcnow()
    shown = _messages(session, scope, [conversation_id])[conversation_id]
    if not shown:
        raise NotFound(f"no exchange {conversation_id}")
    agg = _aggregate(settings, now, [conversation_id])
    row = session.execute(select(agg.c.ended_at, agg.c.ended, agg.c.messages, agg.c.due_cutoff)).one()
    holds = session.scalars(
        select(RetentionHold)
        .where(RetentionHold.conversation_id == conversation_id, RetentionHold.released_at.is_(None))
        .order_by(RetentionHold.id)
    ).all()
    ended = bool(row.ended)
    return ExchangeView(
        conversation_id=conversation_id,
        ended=ended,
        ended_at=row.ended_at,
        due_at=row.ended_at + (now - row.due_cutoff) if ended else None,
        messages=shown,
        holds=[HoldView(h.id, h.reason, h.set_by, h.set_by_role, h.scope, h.set_at) for h in holds],
        all_in_scope=row.messages == len(shown),
    )


def lock_messages(session: Session, conversation_ids: Sequence[str]) -> None:
    """Lock the messages of ``conversation_ids`` (PostgreSQL, in id order) until the commit: a hold and a
    deletion of one exchange run one after the other, so a deletion always sees a hold committed before it."""
    if conversation_ids and session.get_bind().dialect.name == "postgresql":
        session.execute(
            select(Message.id)
            .where(Message.conversation_id.in_(conversation_ids))
            .order_by(Message.id)
            .with_for_update()
        ).all()


def conversation_of(session: Session, scope: RetentionScope, ident: str) -> str:
    """The conversation of the message ``ident``, or ``ident`` itself if it is a conversation: either must
    have a message in ``scope`` (NotFound otherwise, never a hint)."""
    found = session.scalar(
        select(Message.conversation_id)
        .where(or_(Message.id == ident, Message.conversation_id == ident), scope.visible())
        .limit(1)
    )
    if found is None:
        raise NotFound(f"no message or exchange {ident}")
    return found
