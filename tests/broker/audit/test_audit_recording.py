"""``record()`` writes entries set-based at the next flush: each entry exactly once, with its queue row, in the
order recorded, and never an entry whose recording was rolled back (savepoint or transaction)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.models import AuditEntry, AuditPending
from broker.audit.service import Actor, record
from broker.db import new_row
from broker.messages.models import DeadlineEvent


def _record(session: Session, actor: str, n: int) -> list[AuditEntry]:
    return [
        record(
            session,
            actor=Actor(actor, "system"),
            action=AuditAction.KEY_CREATED,
            object_type="key",
            object_id=f"{actor}-{i}",
            countries=["RS", "AL", "AL"],
            details={"i": i},
        )
        for i in range(n)
    ]


def _stored(session: Session, actor: str) -> list[tuple[int, str | None, list[str], dict[str, int], bool]]:
    rows = session.execute(
        select(
            AuditEntry.id,
            AuditEntry.object_id,
            AuditEntry.countries,
            AuditEntry.details,
            AuditPending.entry_id,
        )
        .outerjoin(AuditPending, AuditPending.entry_id == AuditEntry.id)
        .where(AuditEntry.actor == actor)
        .order_by(AuditEntry.id)
    ).all()
    return [(r[0], r[1], r[2], r[3], r[4] is not None) for r in rows]


@pytest.mark.parametrize("count", [1, 3, 40])  # one INSERT, a multi-row INSERT, COPY with ids allocated first
def test_entries_are_written_once_in_order_with_their_queue_rows(db: Session, count: int) -> None:
    actor = f"rec-{uuid.uuid4().hex[:8]}"
    entries = _record(db, actor, count)
    db.flush()
    stored = _stored(db, actor)
    assert [e.id for e in entries] == [s[0] for s in stored]  # each learnt its id, ids follow the order
    assert [s[1] for s in stored] == [f"{actor}-{i}" for i in range(count)]
    assert all(s[2] == ["AL", "RS"] and s[4] for s in stored)
    assert [s[3] for s in stored] == [{"i": i} for i in range(count)]
    db.flush()  # a second flush writes nothing again
    assert len(_stored(db, actor)) == count


def test_an_entry_recorded_in_a_rolled_back_savepoint_is_never_written(db: Session) -> None:
    actor = f"rec-{uuid.uuid4().hex[:8]}"
    _record(db, actor, 1)
    savepoint = db.begin_nested()  # flushes the first entry
    _record(db, actor, 2)
    savepoint.rollback()
    _record(db, actor, 1)
    db.flush()
    assert [s[1] for s in _stored(db, actor)] == [f"{actor}-0", f"{actor}-0"]


def test_an_autoflushing_query_sees_the_recorded_entries(db: Session) -> None:
    actor = f"rec-{uuid.uuid4().hex[:8]}"
    _record(db, actor, 2)
    assert len(db.scalars(select(AuditEntry.id).where(AuditEntry.actor == actor)).all()) == 2


def test_new_row_refuses_a_column_the_model_does_not_have() -> None:
    with pytest.raises(TypeError, match="no column 'kin'"):
        new_row(DeadlineEvent, message_id="m", kin="set")
