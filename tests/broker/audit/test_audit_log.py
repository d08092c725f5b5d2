"""The audit log: positions without gaps, hashes that recompute, the database refusing rewrites."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.models import AuditEntry, AuditLeaf, AuditPending
from broker.audit.service import (
    GENESIS,
    SYSTEM,
    chain_hash,
    entry_document,
    leaf_hash,
    record,
    sequence_all,
    verify_log,
)
from broker.config import Settings
from broker.db import make_engine, make_sessionmaker
from broker.migrate import upgrade


def _add(session: Session, n: int) -> list[int]:
    entries = [
        record(
            session,
            actor=SYSTEM,
            action=AuditAction.MESSAGE_QUEUED,
            object_type="message",
            object_id=f"m{i}",
            countries=["AL", "RS"],
        )
        for i in range(n)
    ]
    session.flush()  # record() defers its inserts to the next flush
    return [e.id for e in entries]


def test_sequencer_appends_every_pending_entry_in_order(db: Session) -> None:
    ids = _add(db, 25)
    sequence_all(db)
    assert db.scalar(select(func.count()).select_from(AuditPending)) == 0
    leaves = db.scalars(select(AuditLeaf).where(AuditLeaf.entry_id.in_(ids)).order_by(AuditLeaf.seq)).all()
    assert [leaf.entry_id for leaf in leaves] == ids
    seqs = [leaf.seq for leaf in leaves]
    assert seqs == list(range(seqs[0], seqs[0] + 25))
    report = verify_log(db)
    assert report.ok, report.line()
    assert report.size == db.scalar(select(func.count()).select_from(AuditLeaf))


def test_leaf_is_rfc6962_leaf_hash_of_canonical_entry(db: Session) -> None:
    (entry_id,) = _add(db, 1)
    sequence_all(db)
    entry = db.get(AuditEntry, entry_id)
    assert entry is not None
    leaf = db.scalar(select(AuditLeaf).where(AuditLeaf.entry_id == entry_id))
    assert leaf is not None
    import hashlib

    import rfc8785

    expected = hashlib.sha256(b"\x00" + rfc8785.dumps(entry_document(entry))).hexdigest()
    assert leaf.leaf_hash == expected
    previous = (
        db.scalar(select(AuditLeaf.chain_hash).where(AuditLeaf.seq == leaf.seq - 1)) if leaf.seq else GENESIS
    )
    assert previous is not None
    assert leaf.chain_hash == chain_hash(previous, leaf_hash(entry_document(entry)))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET outcome = 'x'",
        "DELETE FROM audit_entries",
        "UPDATE audit_leaves SET leaf_hash = 'x'",
        "DELETE FROM audit_leaves",
        "TRUNCATE audit_entries CASCADE",
    ],
)
def test_postgres_refuses_rewriting_the_log(db: Session, statement: str) -> None:
    _add(db, 2)
    sequence_all(db)
    with pytest.raises(DBAPIError, match="append-only"), db.begin_nested():
        db.execute(text(statement))


def test_sqlite_refuses_rewriting_the_log(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings)
    engine = make_engine(settings)
    factory = make_sessionmaker(engine)
    with factory() as session:
        _add(session, 3)
        sequence_all(session)
        session.commit()
        for statement in ("UPDATE audit_entries SET outcome = 'x'", "DELETE FROM audit_leaves"):
            with pytest.raises(DBAPIError, match="append-only"):
                session.execute(text(statement))
            session.rollback()
        assert verify_log(session).ok
    engine.dispose()


def test_an_entry_taken_out_of_the_queue_before_sequencing_is_detected(db: Session) -> None:
    """audit_pending is a queue (rows leave it), so no trigger guards it: the verifier must notice."""
    sequence_all(db)
    assert verify_log(db).ok
    ids = _add(db, 3)
    db.execute(delete(AuditPending).where(AuditPending.entry_id == ids[1]))
    sequence_all(db)
    report = verify_log(db)
    assert not report.ok
    assert f"entry {ids[1]}" in (report.problem or "")
    assert "never entered the log" in (report.problem or "")


def test_tampering_by_an_operator_is_detected_and_located(db: Session) -> None:
    ids = _add(db, 10)
    sequence_all(db)
    victim = ids[6]
    position = db.scalar(select(AuditLeaf.seq).where(AuditLeaf.entry_id == victim))
    # An operator with superuser rights switches the trigger off and rewrites one outcome.
    db.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only"))
    db.execute(update(AuditEntry).where(AuditEntry.id == victim).values(outcome="denied"))
    db.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_append_only"))
    db.expire_all()
    report = verify_log(db)
    assert not report.ok
    assert report.first_bad_seq == position
    assert "altered" in (report.problem or "")
