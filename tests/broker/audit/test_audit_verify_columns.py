"""Full verification from the bytes the sequencer kept: an operator who edits any one stored column (with
the append-only triggers switched off) is caught at that entry's position, and so is one who edits the
entry and its bytes together, or the bytes and the leaf together. Leaves from before the bytes were kept
(``document`` NULL) are verified from their entries as before.

Each case runs on the verifying transaction's own connection (the ``db`` fixture's transaction has
written) and, on a committed database, through the second connection that reads ahead on the same
snapshot; and once on SQLite.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.models import AuditLeaf
from broker.audit.scan import completed_ranges
from broker.audit.service import SYSTEM, Actor, record, sequence_all, verify_log
from broker.bench.stack import database
from broker.config import Settings
from broker.db import make_engine, make_sessionmaker, unit_of_work
from broker.migrate import upgrade

PG_TABLES = ("audit_entries", "audit_leaves")

# One edit per stored column of an entry and of its leaf: (name, SQL with :id the entry and :seq its leaf).
ENTRY_EDITS = {
    "at": "UPDATE audit_entries SET at = at + interval '1 microsecond' WHERE id = :id",
    "actor": "UPDATE audit_entries SET actor = 'someone-else' WHERE id = :id",
    "role": "UPDATE audit_entries SET role = 'admin' WHERE id = :id",
    "action": "UPDATE audit_entries SET action = 'content:read' WHERE id = :id",
    "object_type": "UPDATE audit_entries SET object_type = 'casefile' WHERE id = :id",
    "object_id": "UPDATE audit_entries SET object_id = NULL WHERE id = :id",
    "countries": "UPDATE audit_entries SET countries = '[\"AL\"]' WHERE id = :id",
    "outcome": "UPDATE audit_entries SET outcome = 'denied' WHERE id = :id",
    "request_id": "UPDATE audit_entries SET request_id = 'forged' WHERE id = :id",
    "details": "UPDATE audit_entries SET details = '{\"n\": 2}' WHERE id = :id",
    "details-type": "UPDATE audit_entries SET details = '{\"n\": true}' WHERE id = :id",  # 1 -> true
}
LEAF_EDITS = {
    "document": "UPDATE audit_leaves SET document = document || '\\x20'::bytea WHERE seq = :seq",
    "leaf_hash": "UPDATE audit_leaves SET leaf_hash = repeat('ab', 32) WHERE seq = :seq",
    "chain_hash": "UPDATE audit_leaves SET chain_hash = repeat('cd', 32) WHERE seq = :seq",
    "entry_id": "UPDATE audit_leaves SET entry_id = :spare WHERE seq = :seq",
    "entry_id-dangling": "UPDATE audit_leaves SET entry_id = -1 WHERE seq = :seq",  # no FK on PostgreSQL
    "seq": "UPDATE audit_leaves SET seq = seq + 1000000 WHERE seq = :seq",
}
EDITS = {**ENTRY_EDITS, **LEAF_EDITS}


def _add(session: Session, n: int, *, tag: str = "m") -> list[int]:
    entries = [
        record(
            session,
            actor=Actor("AL-ASP", "agency"),
            action=AuditAction.MESSAGE_QUEUED,
            object_type="message",
            object_id=f"{tag}{i}",
            countries=["AL", "RS"],
            details={"n": 1, "note": "ünïcödé \u2028 ok"},
        )
        for i in range(n)
    ]
    session.flush()
    return [e.id for e in entries]


def _tamper(session: Session, statement: str, **params: object) -> None:
    """What an operator with superuser rights can do: switch the triggers off, edit, switch them on."""
    for table in PG_TABLES:
        session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
    session.execute(text(statement), params)
    for table in PG_TABLES:
        session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only"))
    session.expire_all()


def _prepare(session: Session) -> tuple[int, int, int]:
    """Twelve sequenced entries and one still pending: (victim entry, its position, the pending entry)."""
    ids = _add(session, 12)
    sequence_all(session)
    spare = _add(session, 1, tag="spare")[0]
    assert verify_log(session).ok
    victim = ids[7]
    seq = session.scalar(select(AuditLeaf.seq).where(AuditLeaf.entry_id == victim))
    assert seq is not None
    return victim, seq, spare


@pytest.mark.parametrize("column", sorted(EDITS))
def test_editing_any_one_column_is_caught_at_its_position(db: Session, column: str) -> None:
    victim, seq, spare = _prepare(db)
    _tamper(db, EDITS[column], id=victim, seq=seq, spare=spare)
    report = verify_log(db)
    assert not report.ok
    assert report.first_bad_seq == seq, report.problem
    if column in ENTRY_EDITS:
        assert f"entry {victim} does not match the bytes" in (report.problem or "")


def test_an_entry_and_its_bytes_rewritten_together_break_the_leaf(db: Session) -> None:
    victim, seq, _ = _prepare(db)
    _tamper(db, ENTRY_EDITS["outcome"], id=victim)
    document = db.scalar(select(AuditLeaf.document).where(AuditLeaf.seq == seq))
    assert document is not None
    rewritten = document.replace(b'"outcome":"ok"', b'"outcome":"denied"')
    _tamper(db, "UPDATE audit_leaves SET document = :d WHERE seq = :seq", d=rewritten, seq=seq)
    report = verify_log(db)
    assert not report.ok
    assert report.first_bad_seq == seq
    assert "does not match its leaf hash" in (report.problem or "")
    # ... and with the leaf hash too, the chain link breaks.
    leaf = hashlib.sha256(b"\x00" + rewritten).hexdigest()
    _tamper(db, "UPDATE audit_leaves SET leaf_hash = :h WHERE seq = :seq", h=leaf, seq=seq)
    report = verify_log(db)
    assert report.first_bad_seq == seq
    assert "chain link is broken" in (report.problem or "")


def test_leaves_without_bytes_are_verified_from_their_entries(db: Session) -> None:
    victim, seq, _ = _prepare(db)
    _tamper(db, "UPDATE audit_leaves SET document = NULL WHERE seq >= :seq", seq=seq - 2)
    assert verify_log(db).ok
    _tamper(db, ENTRY_EDITS["outcome"], id=victim)
    report = verify_log(db)
    assert report.first_bad_seq == seq
    assert "altered" in (report.problem or "")


def test_the_bytes_are_the_canonical_entry_and_floats_still_verify(db: Session) -> None:
    """Values whose orjson form is not RFC 8785 (floats) are decided by the full canonical form."""
    record(
        db,
        actor=SYSTEM,
        action=AuditAction.MESSAGE_QUEUED,
        object_type="message",
        object_id="f",
        details={"ratio": 0.5, "big": 1e21, "k": [1.0, 2]},
    )
    db.flush()
    sequence_all(db)
    document = db.scalar(select(AuditLeaf.document).order_by(AuditLeaf.seq.desc()).limit(1))
    assert document is not None
    assert b'"big":1e+21' in document  # RFC 8785 (ES6) number form, not orjson's
    assert orjson.loads(document)["details"]["k"] == [1, 2]
    assert verify_log(db).ok


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        (0, 0, []),
        (0, 1, [(1, 0, 0)]),
        (0, 7, [(1, 0, 3), (2, 0, 1), (3, 0, 0)]),
        (4, 5, [(1, 2, 2)]),
        (5, 8, [(1, 2, 3), (2, 1, 1), (3, 0, 0)]),
    ],
)
def test_the_nodes_a_range_of_leaves_completes(
    first: int, last: int, expected: list[tuple[int, int, int]]
) -> None:
    assert completed_ranges(first, last) == expected


@pytest.fixture(scope="module")
def committed() -> Iterator[Engine]:
    """A database of its own whose log is committed: verification reads ahead on a second connection."""
    with database() as name:
        settings = Settings(
            database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", data_dir=Path()
        )
        upgrade(settings)
        engine = make_engine(settings)
        yield engine
        engine.dispose()


@pytest.mark.parametrize("column", ["details", "countries", "document", "chain_hash", "seq"])
def test_a_committed_log_is_read_ahead_and_edits_are_caught(committed: Engine, column: str) -> None:
    factory = make_sessionmaker(committed)
    with unit_of_work(factory) as session:  # a log of its own for each case
        tables = ("audit_entries", "audit_leaves", "audit_nodes")
        for table in tables:
            session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
        session.execute(text("TRUNCATE audit_pending, audit_nodes, audit_leaves, audit_entries"))
        for table in tables:
            session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only"))
    with unit_of_work(factory) as session:
        _add(session, 40)  # more than one batch below
        sequence_all(session)
    with unit_of_work(factory) as session:
        assert verify_log(session, batch=16).ok  # read ahead, three batches
        victim = session.scalar(select(AuditLeaf.entry_id).where(AuditLeaf.seq == 21))
        spare = _add(session, 1, tag="spare")[0]
    with unit_of_work(factory) as session:
        _tamper(session, EDITS[column], id=victim, seq=21, spare=spare)
    with unit_of_work(factory) as session:
        report = verify_log(session, batch=16)
    assert not report.ok
    assert report.first_bad_seq == 21, report.problem


SQLITE_EDITS = {
    "outcome": "UPDATE audit_entries SET outcome = 'denied' WHERE id = :id",
    "details": "UPDATE audit_entries SET details = '{\"n\": true}' WHERE id = :id",
    "document": "UPDATE audit_leaves SET document = :other WHERE seq = :seq",
    "leaf_hash": "UPDATE audit_leaves SET leaf_hash = :other_hash WHERE seq = :seq",
}


@pytest.mark.parametrize("column", sorted(SQLITE_EDITS))
def test_sqlite_catches_the_same_edits(tmp_path: Path, column: str) -> None:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings)
    engine = make_engine(settings)
    factory = make_sessionmaker(engine)
    with unit_of_work(factory) as session:
        ids = _add(session, 6)
        sequence_all(session)
    with unit_of_work(factory) as session:
        assert verify_log(session).ok
        other = session.scalar(select(AuditLeaf.document).where(AuditLeaf.seq == 4))
        other_hash = session.scalar(select(AuditLeaf.leaf_hash).where(AuditLeaf.seq == 4))
        for table in PG_TABLES:
            for verb in ("update", "delete"):
                session.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{verb}"))
        session.execute(
            text(SQLITE_EDITS[column]), {"id": ids[3], "seq": 3, "other": other, "other_hash": other_hash}
        )
    with unit_of_work(factory) as session:
        report = verify_log(session)
    engine.dispose()
    assert not report.ok
    assert report.first_bad_seq == 3, report.problem
