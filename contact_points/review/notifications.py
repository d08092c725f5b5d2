"""The officers' view of their notifications (``broker.messages.notifications`` writes them): list and
dismiss, each officer seeing what is addressed to its contact point, its role and itself. Dismissing is
audited."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.db import utcnow
from broker.errors import NotFound
from broker.messages.models import ReviewNotification
from broker.messages.notifications import AUDIENCES, notify
from contact_points.review.scope import officer_contact_point

__all__ = ["dismiss", "for_user", "notify"]


def _visible(user: User) -> list[ColumnElement[bool]]:
    audiences = list(AUDIENCES) if user.role == "supervisor" else ["officer"]
    return [
        ReviewNotification.contact_point_id == user.contact_point_id,
        ReviewNotification.audience.in_(audiences),
        or_(ReviewNotification.user_id.is_(None), ReviewNotification.user_id == user.id),
        ReviewNotification.dismissed_at.is_(None),
    ]


def for_user(
    session: Session, user: User, *, limit: int = 50, offset: int = 0
) -> Sequence[ReviewNotification]:
    """Open notifications this officer may see, newest first, one page."""
    officer_contact_point(session, user)
    return session.scalars(
        select(ReviewNotification)
        .where(*_visible(user))
        .order_by(ReviewNotification.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()


def dismiss(session: Session, user: User, notification_id: int, *, actor: Actor) -> None:
    officer_contact_point(session, user)
    row = session.scalar(
        select(ReviewNotification).where(
            ReviewNotification.id == notification_id,
            *_visible(user),
        )
    )
    if row is None:
        raise NotFound(f"no open notification {notification_id}")
    row.dismissed_at = utcnow()
    row.dismissed_by = user.username
    record(
        session,
        actor=actor,
        action=AuditAction.NOTIFICATION_DISMISSED,
        object_type="notification",
        object_id=str(row.id),
        countries=[row.contact_point_id.split("-", 1)[0]],
        details={"kind": row.kind, "message_id": row.message_id},
    )
    session.flush()
