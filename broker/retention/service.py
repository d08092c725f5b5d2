"""Legal holds, compliance reviews and the retention sweep: every change audited, every refusal too.

* A **legal hold** (:func:`set_hold`) is set on an exchange by an officer (its contact point's case file) or an
  auditor (its country's exchanges; a regional auditor any), with a reason: while one stands, nothing deletes
  the exchange's content. :func:`release_holds` releases the caller's own holds (an officer those of its
  contact point, a national auditor those of its country, a regional auditor any), also audited.
* A **review** (:func:`review`) of an exchange that ended records ``keep`` (its content stays until its period
  ends), ``delete`` (now, if no hold stands and every message of it is in the caller's scope) or ``hold``
  (with a reason, as :func:`set_hold`).
* The **sweep** (:func:`sweep`, the beat task ``spoc.retention.sweep``) deletes the content of exchanges past
  their period, skipping held ones, ``retention_batch_size`` exchanges per call.

Refusals of the rules (a hold without a reason, deleting held data, reviewing an exchange that has not ended)
raise ``PolicyRefused`` or ``Conflict`` after the scope check, so a refusal can only be about an exchange the
caller may see; the edge rolls the request back and records it with :func:`record_refusal`
(``retention:refused``). A caller without the role, or out of scope, is refused by the edge's denial audit
(``access:denied``). Functions flush, never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.config import Settings
from broker.db import utcnow
from broker.errors import Conflict, NotPermitted, PolicyRefused, SpocError
from broker.messages.models import Message
from broker.retention.deletion import Deleted, delete_content
from broker.retention.exchanges import (
    ExchangeView,
    RetentionScope,
    due_for_deletion,
    exchange,
    lock_messages,
)
from broker.retention.models import RetentionHold, RetentionReview

__all__ = [
    "REASON_MAX",
    "SWEEPER",
    "Decision",
    "Reviewed",
    "record_refusal",
    "release_holds",
    "review",
    "set_hold",
    "sweep",
]

Decision = Literal["keep", "delete", "hold"]
DECISIONS: tuple[Decision, ...] = ("keep", "delete", "hold")
REASON_MAX = 2000
SWEEPER = Actor("retention", "system")


def _reason(reason: str | None) -> str | None:
    text = (reason or "").strip()
    return text[:REASON_MAX] or None


def set_hold(
    session: Session,
    settings: Settings,
    user: User,
    conversation_id: str,
    *,
    reason: str | None,
    actor: Actor,
    now: datetime | None = None,
) -> RetentionHold:
    """Put the exchange under a legal hold; PolicyRefused without a reason, Conflict once its content is gone
    (deleted before, or by a deletion that held the exchange's lock while this waited for it)."""
    scope = RetentionScope.of(session, user)
    view = exchange(session, settings, scope, conversation_id, now=now)
    given = _reason(reason)
    if given is None:
        raise PolicyRefused("a legal hold needs a reason (the case, the order or the rule that requires it)")
    lock_messages(session, [conversation_id])  # a deletion running now finishes first, or waits for this
    if not _content_left(session, conversation_id):  # read after the lock: a deletion that ran first is seen
        raise Conflict("the content of this exchange was already deleted: there is nothing left to hold")
    hold = RetentionHold(
        conversation_id=conversation_id,
        reason=given,
        set_by=user.username,
        set_by_role=user.role,
        scope=scope.name,
        set_at=now or utcnow(),
    )
    session.add(hold)
    session.flush()
    record(
        session,
        actor=actor,
        action=AuditAction.RETENTION_HOLD_SET,
        object_type="conversation",
        object_id=conversation_id,
        countries=view.countries,
        details={"hold": hold.id, "scope": scope.name, "reason": given},
    )
    return hold


def release_holds(
    session: Session,
    settings: Settings,
    user: User,
    conversation_id: str,
    *,
    reason: str | None = None,
    actor: Actor,
    now: datetime | None = None,
) -> int:
    """Release the caller's active holds on the exchange; Conflict when it has none. Returns how many."""
    scope = RetentionScope.of(session, user)
    view = exchange(session, settings, scope, conversation_id, now=now)
    query = select(RetentionHold).where(
        RetentionHold.conversation_id == conversation_id, RetentionHold.released_at.is_(None)
    )
    if scope.contact_point is not None or scope.country is not None:
        query = query.where(RetentionHold.scope == scope.name)
    holds = session.scalars(query.order_by(RetentionHold.id)).all()
    if not holds:
        raise Conflict("there is no legal hold of yours on this exchange to release")
    when = now or utcnow()
    given = _reason(reason)
    for hold in holds:
        hold.released_at, hold.released_by, hold.release_reason = when, user.username, given
        record(
            session,
            actor=actor,
            action=AuditAction.RETENTION_HOLD_RELEASED,
            object_type="conversation",
            object_id=conversation_id,
            countries=view.countries,
            details={"hold": hold.id, "scope": hold.scope, "reason": given},
        )
    session.flush()
    return len(holds)


@dataclass(frozen=True)
class Reviewed:
    """A recorded review, and what a ``delete`` deleted."""

    review: RetentionReview
    deleted: Deleted | None = None


def review(
    session: Session,
    settings: Settings,
    user: User,
    conversation_id: str,
    *,
    decision: str,
    reason: str | None,
    actor: Actor,
    now: datetime | None = None,
) -> Reviewed:
    """Record the compliance review of an ended exchange: keep, delete now, or hold (with a reason)."""
    scope = RetentionScope.of(session, user)
    view = exchange(session, settings, scope, conversation_id, now=now)
    if decision not in DECISIONS:
        raise PolicyRefused(f"a review decides keep, delete or hold, not {decision!r}")
    _reviewable(view)
    given = _reason(reason)
    deleted: Deleted | None = None
    if decision == "hold":
        set_hold(session, settings, user, conversation_id, reason=given, actor=actor, now=now)
    elif decision == "delete":
        if view.held:
            raise Conflict(
                "the exchange is under a legal hold: its content cannot be deleted until it is released"
            )
        if not view.all_in_scope:
            raise NotPermitted(
                "the exchange has messages outside your scope: only a regional auditor may delete it at once"
            )
        deleted = delete_content(session, [conversation_id], basis="review", actor=actor, now=now)
        if deleted.skipped_held:  # a hold committed between the check above and the deletion's lock
            raise Conflict(
                "the exchange is under a legal hold: its content cannot be deleted until it is released"
            )
    row = RetentionReview(
        conversation_id=conversation_id,
        decision=decision,
        reason=given,
        reviewed_by=user.username,
        reviewed_by_role=user.role,
        reviewed_at=now or utcnow(),
        exchange_ended_at=view.ended_at,
    )
    session.add(row)
    session.flush()
    record(
        session,
        actor=actor,
        action=AuditAction.RETENTION_REVIEWED,
        object_type="conversation",
        object_id=conversation_id,
        countries=view.countries,
        details={
            "review": row.id,
            "decision": decision,
            "reason": given,
            "ended_at": view.ended_at.isoformat(),
        },
    )
    return Reviewed(row, deleted)


def _content_left(session: Session, conversation_id: str) -> bool:
    return (
        session.scalar(
            select(Message.id)
            .where(Message.conversation_id == conversation_id, Message.content_deleted_at.is_(None))
            .limit(1)
        )
        is not None
    )


def _reviewable(view: ExchangeView) -> None:
    if not view.ended:
        raise Conflict("the exchange has not ended: it is reviewed once every message of it is settled")
    if not view.content_left:
        raise Conflict("the content of this exchange was already deleted")


def sweep(
    session: Session, settings: Settings, *, now: datetime | None = None, limit: int | None = None
) -> Deleted:
    """Delete the content of up to ``limit`` (``retention_batch_size``) exchanges past their retention period,
    held ones skipped; one batch in the caller's unit of work."""
    due = due_for_deletion(session, settings, now=now, limit=limit or settings.retention_batch_size)
    return delete_content(session, due, basis="period", actor=SWEEPER, now=now)


def record_refusal(
    session: Session,
    settings: Settings,
    user: User,
    conversation_id: str,
    *,
    attempt: str,
    error: SpocError,
    actor: Actor,
) -> None:
    """Audit a refused hold, release or review (``retention:refused``), in the caller's (fresh) transaction.

    Only refusals raised after the scope check reach here, so the exchange is one the caller may see; the
    entry goes to the countries of the messages the caller sees, never further."""
    try:
        countries = exchange(session, settings, RetentionScope.of(session, user), conversation_id).countries
    except SpocError:
        countries = []
    record(
        session,
        actor=actor,
        action=AuditAction.RETENTION_REFUSED,
        object_type="conversation",
        object_id=conversation_id,
        countries=countries,
        outcome="refused",
        details={"attempt": attempt, "error": error.slug, "detail": error.detail[:300]},
    )
    session.flush()
