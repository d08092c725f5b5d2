"""The verifier's fast check of PostgreSQL ranges: exactly as strict as the generic loop it stands in for.

A log of its own, committed, whose entries the sequencer appended in id order: every range takes the fast
path (leaves by position, entries by one span of ids, column by column). Each edit of one column of an
entry, a leaf or a node must give the very report the generic loop gives (``fast=False``), at the edited
position. Entries the fast path does not take (a field JSON must escape, a float, entries out of id order,
a legacy leaf, a missing entry) go the generic way and verify as before. Checkpoints are checked at their
size inside a range, and dropped entries are still found when the count says the entries add up.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from broker.audit import merkle, scan, verify
from broker.audit.actions import AuditAction
from broker.audit.models import AuditLeaf
from broker.audit.service import Actor, LogReport, record, sequence_all
from broker.audit.verify import verify_stored_log
from broker.bench.stack import database
from broker.config import Settings
from broker.db import make_engine, make_sessionmaker, unit_of_work
from broker.migrate import upgrade

TABLES = ("audit_entries", "audit_leaves", "audit_nodes")
VICTIM = 21  # the edited position: inside the second range of 16

EDITS = {
    "at": "UPDATE audit_entries SET at = at + interval '1 microsecond' WHERE id = :id",
    "actor": "UPDATE audit_entries SET actor = 'someone-else' WHERE id = :id",
    "actor-quote": """UPDATE audit_entries SET actor = 'AL-ASP","role":"admin' WHERE id = :id""",
    "role": "UPDATE audit_entries SET role = 'admin' WHERE id = :id",
    "action": "UPDATE audit_entries SET action = 'content:read' WHERE id = :id",
    "object_type": "UPDATE audit_entries SET object_type = 'casefile' WHERE id = :id",
    "object_id": "UPDATE audit_entries SET object_id = NULL WHERE id = :id",
    "object_id-null-text": "UPDATE audit_entries SET object_id = 'null' WHERE id = :id",
    "countries": "UPDATE audit_entries SET countries = '[\"AL\"]' WHERE id = :id",
    "countries-order": 'UPDATE audit_entries SET countries = \'["RS", "AL"]\' WHERE id = :id',
    "outcome": "UPDATE audit_entries SET outcome = 'denied' WHERE id = :id",
    "request_id": "UPDATE audit_entries SET request_id = 'forged' WHERE id = :id",
    "details": 'UPDATE audit_entries SET details = \'{"n": 2, "note": "x"}\' WHERE id = :id',
    "details-type": "UPDATE audit_entries SET details = details || '{\"n\": true}' WHERE id = :id",
    "details-float": "UPDATE audit_entries SET details = details || '{\"n\": 1.0}' WHERE id = :id",
    "document": "UPDATE audit_leaves SET document = document || '\\x20'::bytea WHERE seq = :seq",
    "document-null": "UPDATE audit_leaves SET document = NULL WHERE seq = :seq",
    "leaf_hash": "UPDATE audit_leaves SET leaf_hash = repeat('ab', 32) WHERE seq = :seq",
    "leaf_hash-upper": "UPDATE audit_leaves SET leaf_hash = upper(leaf_hash) WHERE seq = :seq",
    "chain_hash": "UPDATE audit_leaves SET chain_hash = repeat('cd', 32) WHERE seq = :seq",
    "entry_id": "UPDATE audit_leaves SET entry_id = :spare WHERE seq = :seq",
    "entry_id-dangling": "UPDATE audit_leaves SET entry_id = -1 WHERE seq = :seq",
    "entry_id-swap": "UPDATE audit_leaves SET entry_id = -entry_id WHERE seq = :seq; "
    "UPDATE audit_leaves SET entry_id = entry_id - 1 WHERE seq = :seq + 1; "
    "UPDATE audit_leaves SET entry_id = 1 - entry_id WHERE seq = :seq",
    "seq": "UPDATE audit_leaves SET seq = seq + 1000000 WHERE seq = :seq",
    "node": "UPDATE audit_nodes SET hash = '\\x00'::bytea || substring(hash from 2) "
    "WHERE level = 1 AND idx = :seq / 2",
    "node-high": "UPDATE audit_nodes SET hash = '\\x00'::bytea || substring(hash from 2) "
    "WHERE level = 4 AND idx = :seq / 16",
    "node-moved": "UPDATE audit_nodes SET idx = idx + 1000000 WHERE level = 2 AND idx = :seq / 4",
}


@pytest.fixture(scope="module")
def committed() -> Iterator[Engine]:
    with database() as name:
        settings = Settings(
            database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", data_dir=Path()
        )
        upgrade(settings)
        engine = make_engine(settings)
        yield engine
        engine.dispose()


def _tamper(session: Session, statement: str, **params: object) -> None:
    for table in TABLES:
        session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
    for one in statement.split("; "):
        session.execute(text(one), params)
    for table in TABLES:
        session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only"))


def _entries(session: Session, n: int, *, tag: str = "m", **fields: Any) -> list[int]:
    entries = [
        record(
            session,
            actor=fields.get("actor", Actor("AL-ASP", "agency")),
            action=AuditAction.MESSAGE_QUEUED,
            object_type="message",
            object_id=fields.get("object_id", f"{tag}{i}"),
            countries=["AL", "RS"],
            details=fields.get(
                "details", {"n": 1, "note": "ünïcödé \u2028 ok", "z": [1, {"b": 2, "a": None}]}
            ),
        )
        for i in range(n)
    ]
    session.flush()
    return [e.id for e in entries]


def _fresh_log(engine: Engine, n: int = 40) -> None:
    """An empty log, then ``n`` entries appended in id order and one more queued."""
    with unit_of_work(make_sessionmaker(engine)) as session:
        for table in TABLES:
            session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
        session.execute(text("TRUNCATE audit_pending, audit_nodes, audit_leaves, audit_entries"))
        for table in TABLES:
            session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only"))
    with unit_of_work(make_sessionmaker(engine)) as session:
        _entries(session, n)
        sequence_all(session)


def _both(engine: Engine, **kwargs: Any) -> tuple[LogReport, LogReport]:
    """The fast and the generic verification of the committed log."""
    reports = []
    for fast in (True, False):
        with unit_of_work(make_sessionmaker(engine)) as session:
            reports.append(verify_stored_log(session, batch=16, fast=fast, **kwargs))
    return reports[0], reports[1]


@pytest.fixture
def slow_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rows the generic loop checked (0 when every range took the fast path)."""
    calls: list[int] = []
    original = verify._Verifier.slow

    def counting(self: verify._Verifier, rows: list[scan.Row], nodes: Any) -> LogReport | None:
        calls.append(len(rows))
        return original(self, rows, nodes)

    monkeypatch.setattr(verify._Verifier, "slow", counting)
    return calls


def test_an_intact_log_takes_the_fast_path(committed: Engine, slow_calls: list[int]) -> None:
    _fresh_log(committed)
    with unit_of_work(make_sessionmaker(committed)) as session:
        fast = verify_stored_log(session, batch=16)
    assert slow_calls == []  # no range went the generic way
    with unit_of_work(make_sessionmaker(committed)) as session:
        generic = verify_stored_log(session, batch=16, fast=False)
    assert sum(slow_calls) == 40
    assert fast.ok
    assert fast == generic
    assert fast.size == 40


def test_a_transaction_that_wrote_reads_on_its_own_connection_and_keeps_its_settings(
    committed: Engine, slow_calls: list[int]
) -> None:
    _fresh_log(committed)
    with unit_of_work(make_sessionmaker(committed)) as session:
        _entries(session, 1, tag="queued")  # written here: invisible to a second connection
        settings = "SELECT current_setting('enable_hashjoin'), current_setting('jit')"
        before = session.execute(text(settings)).one()
        report = verify_stored_log(session, batch=16)
        assert session.execute(text(settings)).one() == before
    assert report.ok
    assert (report.size, report.pending) == (40, 1)
    assert slow_calls == []


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_every_edit_gives_the_generic_report_at_its_position(committed: Engine, edit: str) -> None:
    _fresh_log(committed)
    with unit_of_work(make_sessionmaker(committed)) as session:
        victim = session.scalar(select(AuditLeaf.entry_id).where(AuditLeaf.seq == VICTIM))
        spare = _entries(session, 1, tag="spare")[0]
    with unit_of_work(make_sessionmaker(committed)) as session:
        _tamper(session, EDITS[edit], id=victim, seq=VICTIM, spare=spare)
    fast, generic = _both(committed)
    assert fast == generic
    if edit in ("details-float", "document-null"):
        # 1.0 is the JSON value 1 (RFC 8785 writes it so), and a leaf without bytes is verified from its
        # entry: neither is an alteration, for either check.
        assert fast.ok
        return
    assert not fast.ok
    assert fast.first_bad_seq is not None
    assert fast.first_bad_seq <= VICTIM
    assert fast.first_bad_seq >= (VICTIM // 16) * 16 or edit.startswith("node"), fast.problem


@pytest.mark.parametrize(
    ("label", "fields"),
    [
        ("quote", {"object_id": 'a"b'}),
        ("backslash", {"object_id": "a\\b"}),
        ("newline", {"object_id": "a\nb"}),
        ("tab", {"actor": Actor("AL\tASP", "agency")}),
        ("unicode", {"object_id": "ünï \u2028 😀"}),
        ("float", {"details": {"ratio": 0.5, "big": 1e21}}),
        ("nested", {"details": {"b": {"z": 1, "a": [True, None, 'x"y']}, "a": ""}}),
    ],
)
def test_entries_the_fast_path_does_not_take_verify_as_before(
    committed: Engine, label: str, fields: dict[str, Any]
) -> None:
    _fresh_log(committed)
    with unit_of_work(make_sessionmaker(committed)) as session:
        _entries(session, 3, tag=label, **fields)
        sequence_all(session)
    fast, generic = _both(committed)
    assert fast.ok, fast.problem
    assert fast == generic
    with unit_of_work(make_sessionmaker(committed)) as session:
        last = session.scalar(select(AuditLeaf.entry_id).order_by(AuditLeaf.seq.desc()).limit(1))
        _tamper(session, EDITS["outcome"], id=last)
    fast, generic = _both(committed)
    assert not fast.ok
    assert fast == generic
    assert fast.first_bad_seq == 42


def test_entries_appended_out_of_id_order_and_legacy_leaves_verify(
    committed: Engine, slow_calls: list[int]
) -> None:
    _fresh_log(committed)
    factory = make_sessionmaker(committed)
    with unit_of_work(factory) as session:
        early, _ = _entries(session, 2, tag="late")
        session.execute(text("DELETE FROM audit_pending WHERE entry_id = :id"), {"id": early})
    with unit_of_work(factory) as session:
        sequence_all(session)  # ``late`` first
        session.execute(text("INSERT INTO audit_pending (entry_id) VALUES (:id)"), {"id": early})
    with unit_of_work(factory) as session:
        sequence_all(session)
    fast, generic = _both(committed)
    assert fast.ok
    assert fast == generic
    assert slow_calls[0] > 0  # the range with the swapped pair went the generic way
    with unit_of_work(factory) as session:
        _tamper(session, "UPDATE audit_leaves SET document = NULL WHERE seq BETWEEN 3 AND 30")
    fast, generic = _both(committed)
    assert fast.ok
    assert fast == generic


def test_a_dropped_entry_is_found_even_if_the_queue_is_padded(committed: Engine) -> None:
    """Take one entry out of the queue and put an appended one back in: the counts would add up, but a
    queued entry that has a leaf does not count, so the anti-join runs and names the dropped one."""
    _fresh_log(committed)
    factory = make_sessionmaker(committed)
    with unit_of_work(factory) as session:
        (dropped,) = _entries(session, 1, tag="dropped")
    with unit_of_work(factory) as session:
        session.execute(text("DELETE FROM audit_pending WHERE entry_id = :id"), {"id": dropped})
        appended = session.scalar(select(AuditLeaf.entry_id).where(AuditLeaf.seq == 5))
        session.execute(text("INSERT INTO audit_pending (entry_id) VALUES (:id)"), {"id": appended})
    fast, generic = _both(committed)
    assert not fast.ok
    assert fast == generic
    assert f"first: entry {dropped}" in (fast.problem or "")


def _checkpoint(size: int, root: bytes, ident: int) -> Any:
    return SimpleNamespace(size=size, root=root, id=ident)


@pytest.mark.parametrize("size", [1, 15, 16, 17, 21, 32, 40])
@pytest.mark.parametrize("honest", [True, False])
def test_checkpoints_inside_a_range_are_checked_at_their_size(
    committed: Engine, size: int, honest: bool
) -> None:
    _fresh_log(committed)
    with unit_of_work(make_sessionmaker(committed)) as session:
        leaves = [
            bytes.fromhex(h) for h in session.scalars(select(AuditLeaf.leaf_hash).order_by(AuditLeaf.seq))
        ]
        root = merkle.root_of(leaves[:size]) if honest else hashlib.sha256(b"forged").digest()
        found = []
        for fast in (True, False):
            checkpoints = sorted(
                [_checkpoint(8, merkle.root_of(leaves[:8]), 1), _checkpoint(size, root, 2)],
                key=lambda c: c.size,
            )
            checker = verify._Verifier(session, 0, checkpoints, fast=fast)
            found.append(checker.run(16))
    assert found[0] == found[1]
    assert found[0].ok is honest
    if not honest:
        assert found[0].first_bad_seq == (8 if size > 8 else 0)
        assert "do not match signed checkpoint 2" in (found[0].problem or "")


def test_frontier_extend_completes_the_nodes_append_does() -> None:
    rng = random.Random(7)
    for _ in range(200):
        one, many = merkle.Frontier(), merkle.Frontier()
        for _ in range(rng.randrange(1, 6)):
            leaves = [rng.randbytes(32) for _ in range(rng.randrange(0, 70))]
            start = one.size
            appended = dict(node for leaf in leaves for node in one.append(leaf))
            levels = many.extend(leaves)
            assert levels[:1] == ([(start, leaves)] if leaves else [])
            assert {
                (level, first + i): h
                for level, (first, hashes) in enumerate(levels)
                if level
                for i, h in enumerate(hashes)
            } == appended
            assert (many.size, many.root(), many.subtrees()) == (one.size, one.root(), one.subtrees())


def test_ranges_start_small() -> None:
    assert scan.spans(0, 16384) == []
    assert scan.spans(5000, 16384) == [(0, 1024), (1024, 3072), (3072, 7168)]
    assert scan.spans(40, 16) == [(0, 16), (16, 32), (32, 48)]


def test_stored_nodes_must_match_by_name_not_only_by_hash() -> None:
    frontier = merkle.Frontier()
    levels = frontier.extend([hashlib.sha256(bytes([i])).digest() for i in range(6)])
    named = [
        (level, first + i, h)
        for level, (first, hashes) in enumerate(levels)
        if level
        for i, h in enumerate(hashes)
    ]
    stored = scan.Nodes(*zip(*named, strict=True))
    assert verify._same_nodes(levels, stored)
    assert not verify._same_nodes(levels, stored._replace(indexes=(0, 1, 2, 1)))
    assert not verify._same_nodes(levels, stored._replace(levels=(1, 1, 2, 2)))
    assert not verify._same_nodes(levels, stored._replace(hashes=stored.hashes[:-1]))


def test_stored_hashes_must_match_one_by_one() -> None:
    digests = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    stored = tuple(d.hex() for d in digests)
    assert verify._same_hex(digests, stored)
    shifted = (stored[0][:-1], stored[0][-1] + stored[1], stored[2])  # the same characters, other splits
    assert not verify._same_hex(digests, shifted)
    assert not verify._same_hex(digests, (stored[0].upper(), *stored[1:]))
