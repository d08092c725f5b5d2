"""The deadline monitor: a warning at 75 % of the time, an escalation to supervisors on breach, once each;
nothing while the clock is stopped; an extension moves both."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.keys.service import DatabaseKeyStore
from broker.messages.clock import deadline_events
from broker.messages.models import Message, ReviewNotification
from broker.messages.service import forward
from contact_points.review.monitor import check_deadlines
from tests.broker.messages.spoc_builders import URGENT_DIRECT, audit_entries, decide_as, submit_as
from tests.factories import Region

EVERYTHING = 100_000  # the shared test database holds other tests' messages too


def _urgent(db: Session, keys: DatabaseKeyStore, region: Region) -> Message:
    return submit_as(db, keys, region, "AL-ASP", destination_country="MK", priority=URGENT_DIRECT)


def _at(message: Message, hours: float) -> datetime:
    return message.received_at + timedelta(hours=hours)


def _notes(db: Session, message: Message) -> list[ReviewNotification]:
    query = select(ReviewNotification).where(ReviewNotification.message_id == message.id)
    return list(db.scalars(query.order_by(ReviewNotification.id)).all())


def test_a_warning_at_75_percent_then_an_escalation_on_breach_each_once(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = _urgent(db, keys, region)
    check_deadlines(db, now=_at(message, 5.9), limit=EVERYTHING)
    assert message.deadline_warned_at is None

    check_deadlines(db, now=_at(message, 6.1), limit=EVERYTHING)
    assert message.deadline_warned_at == _at(message, 6.1)
    [warning] = _notes(db, message)
    assert (warning.kind, warning.audience, warning.contact_point_id) == (
        "deadline-warning",
        "officer",
        "AL-SPOC",
    )
    assert "1 h 54 min" in warning.text

    check_deadlines(db, now=_at(message, 7.0), limit=EVERYTHING)
    assert len(_notes(db, message)) == 1  # warned once

    check_deadlines(db, now=_at(message, 8.5), limit=EVERYTHING)
    check_deadlines(db, now=_at(message, 9.0), limit=EVERYTHING)
    [_, breach] = _notes(db, message)
    assert (breach.kind, breach.audience, breach.contact_point_id) == (
        "deadline-breach",
        "supervisor",
        "AL-SPOC",
    )
    assert [e.kind for e in deadline_events(db, message.id)] == ["set", "warned", "breached"]
    assert len(audit_entries(db, object_id=message.id, action=AuditAction.DEADLINE_WARNED)) == 1
    [breached] = audit_entries(db, object_id=message.id, action=AuditAction.DEADLINE_BREACHED)
    assert breached.details["to"] == "AL-SPOC"


def test_the_contact_point_holding_the_message_is_told(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = _urgent(db, keys, region)
    decide_as(db, keys, "al-officer", message.id, "approve")
    forward(db, keys, message.id)
    check_deadlines(db, now=_at(message, 8.5), limit=EVERYTHING)
    assert {n.contact_point_id for n in _notes(db, message)} == {"MK-SPOC"}  # it owes the answer now


def test_a_stopped_clock_is_neither_warned_nor_escalated(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = _urgent(db, keys, region)
    decide_as(db, keys, "al-officer", message.id, "return", reason="which hostage?")
    check_deadlines(db, now=_at(message, 48), limit=EVERYTHING)
    assert (message.deadline_warned_at, message.deadline_breached_at) == (None, None)
    assert _notes(db, message) == []


def test_an_extension_moves_the_warning(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    message = _urgent(db, keys, region)
    decide_as(db, keys, "al-officer", message.id, "approve")
    forward(db, keys, message.id)  # only the requested contact point extends
    check_deadlines(db, now=_at(message, 6.5), limit=EVERYTHING)
    assert message.deadline_warned_at is not None
    decide_as(
        db,
        keys,
        "mk-officer",
        message.id,
        "extend",
        extend_hours=10,
        extension_reason="judicial-authorisation-pending",
        reason="court order pending",
    )
    assert message.deadline_warned_at is None  # 18 h in all: the warning falls at 13.5 h now
    check_deadlines(db, now=_at(message, 13.0), limit=EVERYTHING)
    assert message.deadline_warned_at is None
    check_deadlines(db, now=_at(message, 13.6), limit=EVERYTHING)
    assert message.deadline_warned_at is not None


def test_answers_and_notifications_have_no_deadline_to_watch(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    notification = submit_as(
        db, keys, region, "AL-ASP", destination_country="MK", message_type="notification"
    )
    check_deadlines(db, now=_at(notification, 24 * 30), limit=EVERYTHING)
    assert _notes(db, notification) == []


@pytest.mark.usefixtures("worker_env")
def test_the_beat_runs_the_monitor_every_minute() -> None:
    from workers.celery_app import app
    from workers.review_tasks import check_review_deadlines

    entry = app.conf.beat_schedule["review-deadlines"]
    assert (entry["task"], entry["schedule"]) == ("spoc.review.deadlines", 60.0)
    assert "spoc.review.deadlines" in app.tasks
    result = check_review_deadlines()  # the task body, in-process, on the test database
    assert set(result) == {"warned", "breached"}
