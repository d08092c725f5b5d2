"""``insert_all`` on PostgreSQL takes one of three paths by row count (one row, a few rows as one INSERT of
several VALUES built past the compiler, COPY from ``COPY_FROM_ROWS``): each must write exactly what the ORM
would, with the column types' bind processing, and fail like a flush."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import exc, select
from sqlalchemy.orm import Session

from broker.db import COPY_FROM_ROWS, insert_all
from broker.messages.models import DeadlineEvent, IdempotencyRecord, Message
from broker.messages.states import State


def _records(n: int, *, at: datetime) -> list[IdempotencyRecord]:
    tag = uuid.uuid4().hex[:8]
    return [
        IdempotencyRecord(
            agency_id="AL-ASP",
            key=f"{tag}-{i}",
            body_hash=f"{i:064x}",
            status_code=200 + i,
            response={"i": i, "name": "Đorđe “quoted” \\ back", "nested": {"list": [1, None, True]}},
            created_at=at,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("count", [1, 3, COPY_FROM_ROWS - 1, COPY_FROM_ROWS, COPY_FROM_ROWS + 5])
def test_each_path_writes_what_it_was_given(db: Session, count: int) -> None:
    # Given in another offset: stored as the same instant, read back in UTC.
    at = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    records = _records(count, at=at)
    insert_all(db, records)
    keys = [r.key for r in records]
    rows = db.execute(
        select(
            IdempotencyRecord.key,
            IdempotencyRecord.body_hash,
            IdempotencyRecord.status_code,
            IdempotencyRecord.response,
            IdempotencyRecord.created_at,
        )
        .where(IdempotencyRecord.key.in_(keys))
        .order_by(IdempotencyRecord.status_code)
    ).all()
    assert [tuple(r) for r in rows] == [
        (r.key, r.body_hash, r.status_code, r.response, at.astimezone(UTC)) for r in records
    ]
    assert all(r.created_at.utcoffset() == timedelta(0) for r in rows)


@pytest.mark.parametrize("count", [1, 3, COPY_FROM_ROWS])
def test_defaults_and_generated_keys_are_filled(db: Session, count: int, message_id: str) -> None:
    events = [DeadlineEvent(message_id=message_id, kind="set", actor=f"t{i}") for i in range(count)]
    before = datetime.now(UTC)
    insert_all(db, events)
    rows = db.execute(
        select(DeadlineEvent.id, DeadlineEvent.at, DeadlineEvent.reason, DeadlineEvent.actor)
        .where(DeadlineEvent.message_id == message_id)
        .order_by(DeadlineEvent.id)
    ).all()
    assert [r.actor for r in rows] == [f"t{i}" for i in range(count)]
    assert len({r.id for r in rows}) == count  # the database's own ids
    assert all(r.reason is None and r.at >= before - timedelta(seconds=5) for r in rows)


@pytest.mark.parametrize("count", [1, 3, COPY_FROM_ROWS])
def test_a_naive_datetime_is_refused_and_nothing_is_written(db: Session, count: int) -> None:
    records = _records(count, at=datetime(2026, 5, 1, 12, 0))  # naive: which zone?
    with pytest.raises((ValueError, exc.StatementError), match="naive"):
        insert_all(db, records)
    stored = db.scalars(
        select(IdempotencyRecord.key).where(IdempotencyRecord.key.in_([r.key for r in records]))
    )
    assert list(stored) == []


@pytest.mark.parametrize("count", [1, 3])
def test_a_duplicate_key_fails_as_a_flush_does(db: Session, count: int) -> None:
    records = _records(count, at=datetime.now(UTC))
    insert_all(db, records)
    again = _records(count, at=datetime.now(UTC))
    for record, first in zip(again, records, strict=True):
        record.key = first.key
    with pytest.raises(exc.IntegrityError), db.begin_nested():
        insert_all(db, again)


@pytest.fixture
def message_id(db: Session) -> str:
    message = Message(
        id=str(uuid.uuid4()),
        conversation_id=str(uuid.uuid4()),
        type="request",
        sender_agency="XK-KP",
        origin_country="XK",
        destination_country="AL",
        category="drug-trafficking",
        classification="RESTRICTED",
        handling_codes=["H0"],
        priority_level="normal",
        state=State.ORIGIN_REVIEW,
        envelope={},
        digest="sha-256:test",
    )
    db.add(message)
    db.flush()
    return message.id
