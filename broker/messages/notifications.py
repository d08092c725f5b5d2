"""Notifications for a contact point's officers: deadline warnings and breaches, requests for onward
dissemination, clarifications asked of its agencies, assignments.

A notification is addressed to a contact point and an audience (``officer``: every officer and supervisor;
``supervisor``: supervisors only), optionally to one officer. The officers' view of them (list, dismiss)
is ``contact_points.review.notifications``.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from broker.db import utcnow
from broker.messages.models import ReviewNotification

AUDIENCES = ("officer", "supervisor")


def notify(
    session: Session,
    *,
    contact_point_id: str,
    kind: str,
    text: str,
    message_id: str | None = None,
    audience: str = "officer",
    user_id: int | None = None,
) -> ReviewNotification:
    if audience not in AUDIENCES:
        raise ValueError(f"unknown audience {audience!r}")
    row = ReviewNotification(
        contact_point_id=contact_point_id,
        audience=audience,
        user_id=user_id,
        message_id=message_id,
        kind=kind,
        text=text[:500],
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row
