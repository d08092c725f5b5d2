"""The stored tree, signed checkpoints, and full verification: against the reference, and against tampering."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from broker.audit import checkpoints as cps
from broker.audit import merkle
from broker.audit.actions import AuditAction
from broker.audit.models import AuditAlert, AuditCheckpoint, AuditEntry, AuditLeaf, AuditNode
from broker.audit.service import SYSTEM, record, sequence_all, verify_log
from broker.audit.tree import StoredTree
from broker.audit.witness import cosign_latest
from broker.config import Settings
from broker.crypto import MasterKey
from broker.crypto.note import NoteSigner, open_note, sign_note
from broker.db import make_engine, make_sessionmaker, unit_of_work
from broker.directory.seed import LOG_SIGNER, seed_region
from broker.keys.service import DatabaseKeyStore
from broker.migrate import upgrade


def add(session: Session, n: int, *, countries: tuple[str, ...] = ("AL", "RS")) -> list[int]:
    ids = [
        record(
            session,
            actor=SYSTEM,
            action=AuditAction.MESSAGE_QUEUED,
            object_type="message",
            object_id=f"cp-{i}",
            countries=countries,
        ).id
        for i in range(n)
    ]
    sequence_all(session)
    return ids


def all_leaves(session: Session) -> list[bytes]:
    return [bytes.fromhex(x) for x in session.scalars(select(AuditLeaf.leaf_hash).order_by(AuditLeaf.seq))]


def test_the_log_key_is_the_seeded_log_signer() -> None:
    assert cps.LOG_PARTY == LOG_SIGNER


def test_stored_roots_and_proofs_agree_with_a_recomputation(db: Session) -> None:
    add(db, 300)
    stored = StoredTree(db)
    d = all_leaves(db)
    size = stored.size()
    assert size == len(d)
    rng = random.Random(7)
    checked = sorted(
        {1, 2, 3, 7, 8, 9, 255, 256, 257, size // 2, size - 1, size, *rng.sample(range(1, size), 20)}
    )
    for n in checked:
        root = merkle.root_of(d[:n])
        assert stored.root(n) == root
        for index in {0, n - 1, rng.randrange(n)}:
            merkle.verify_inclusion(index, n, d[index], stored.inclusion_proof(index, n), root)
        old = rng.randrange(0, n + 1)
        merkle.verify_consistency(old, n, merkle.root_of(d[:old]), root, stored.consistency_proof(old, n))
    batch = stored.inclusion_proofs([0, size // 3, size - 1], size)
    assert batch[size - 1] == (d[size - 1], stored.inclusion_proof(size - 1, size))
    with pytest.raises(merkle.ProofError, match="holds"):
        stored.inclusion_proof(0, size + 1)


def test_a_checkpoint_is_a_c2sp_note_signed_by_the_log_key(db: Session, keys: DatabaseKeyStore) -> None:
    add(db, 5)
    issued = cps.issue(db, keys)
    checkpoint = issued.checkpoint
    assert checkpoint is not None
    assert issued.new
    origin, size, root_b64, time_line, blank, signature, end = checkpoint.note.split("\n")
    assert (origin, blank, end) == ("spoc/audit-log", "", "")
    assert int(size) == StoredTree(db).size() == checkpoint.size
    assert base64.b64decode(root_b64) == StoredTree(db).root(checkpoint.size) == checkpoint.root
    assert time_line == f"time {int(checkpoint.issued_at.timestamp())}"
    assert signature.startswith("— spoc/audit-log ")
    log_key = cps.log_keys(db)[checkpoint.kid]
    assert open_note(checkpoint.note, verifiers=[log_key]).text.startswith("spoc/audit-log\n")
    # Nothing new: the latest checkpoint still covers the log.
    assert cps.issue(db, keys) == cps.Issued(checkpoint, new=False)
    add(db, 3)
    later = cps.issue(db, keys).checkpoint
    assert later is not None
    assert later.size == checkpoint.size + 3
    merkle.verify_consistency(
        checkpoint.size,
        later.size,
        checkpoint.root,
        later.root,
        StoredTree(db).consistency_proof(checkpoint.size, later.size),
    )
    assert verify_log(db).ok


def _rewrite_position_zero(db: Session) -> None:
    """An operator with superuser rights rewrites leaf 0 and every stored node over it."""
    for table in ("audit_leaves", "audit_nodes"):
        db.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
    db.execute(update(AuditLeaf).where(AuditLeaf.seq == 0).values(leaf_hash="ab" * 32))
    db.execute(update(AuditNode).where(AuditNode.idx == 0).values(hash=b"\xab" * 32))
    for table in ("audit_leaves", "audit_nodes"):
        db.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only"))
    db.expire_all()


def test_the_log_refuses_to_sign_a_rewritten_tree_and_raises_an_alert(
    db: Session, keys: DatabaseKeyStore
) -> None:
    add(db, 4)
    first = cps.issue(db, keys).checkpoint
    assert first is not None
    _rewrite_position_zero(db)
    add(db, 2)
    refused = cps.issue(db, keys)
    assert refused.checkpoint is None
    assert "not consistent with signed checkpoint" in (refused.problem or "")
    alert = db.get(AuditAlert, refused.alert_id)
    assert alert is not None
    assert (alert.kind, alert.reporter, alert.checkpoint_id) == ("inconsistent", "log", first.id)
    entry = db.scalar(
        select(AuditEntry).where(AuditEntry.action == "log:fork-detected").order_by(AuditEntry.id.desc())
    )
    assert entry is not None
    assert entry.details["alert"] == alert.id
    assert len(entry.countries) == 8  # every national auditor sees it
    # The verifier locates it: position 0 no longer matches its entry.
    report = verify_log(db)
    assert not report.ok
    assert report.first_bad_seq == 0


def test_a_doctored_proof_source_is_located(db: Session) -> None:
    add(db, 40)
    size = StoredTree(db).size()
    level, index = 2, (size - 20) // 4  # a complete 4-leaf subtree well inside the log
    db.execute(text("ALTER TABLE audit_nodes DISABLE TRIGGER audit_nodes_append_only"))
    db.execute(
        update(AuditNode).where(AuditNode.level == level, AuditNode.idx == index).values(hash=b"\x00" * 32)
    )
    db.execute(text("ALTER TABLE audit_nodes ENABLE TRIGGER audit_nodes_append_only"))
    report = verify_log(db)
    assert not report.ok
    assert report.first_bad_seq == index << level
    assert f"stored tree node ({level}, {index})" in (report.problem or "")


def test_a_rewrite_only_signatures_can_see_is_bounded_by_the_last_matching_checkpoint(
    db: Session, keys: DatabaseKeyStore
) -> None:
    add(db, 6)
    honest = cps.issue(db, keys).checkpoint
    assert honest is not None
    add(db, 4)
    size = StoredTree(db).size()
    # What the log signed at `size` differs from what the database now holds (entries, leaves, links and
    # nodes all rewritten consistently look exactly like this to a verifier).
    signer = NoteSigner.from_keypair(cps.ORIGIN, key=keys.signing_key(cps.LOG_PARTY))
    body = cps.CheckpointBody(cps.ORIGIN, size, b"\x42" * 32, 1)
    db.add(
        AuditCheckpoint(
            origin=cps.ORIGIN,
            size=size,
            root=body.root,
            kid=keys.signing_key(cps.LOG_PARTY).kid,
            note=sign_note(body.text(), signer),
        )
    )
    db.flush()
    report = verify_log(db)
    assert not report.ok
    assert report.first_bad_seq == honest.size
    assert "do not match signed checkpoint" in (report.problem or "")


REWRITES = {
    "audit_nodes": ("UPDATE audit_nodes SET idx = idx", "DELETE FROM audit_nodes"),
    "audit_checkpoints": ("UPDATE audit_checkpoints SET size = size", "DELETE FROM audit_checkpoints"),
    "audit_cosignatures": ("UPDATE audit_cosignatures SET line = line", "DELETE FROM audit_cosignatures"),
    "audit_alerts": ("UPDATE audit_alerts SET detail = detail", "DELETE FROM audit_alerts"),
}


@pytest.mark.parametrize("table", sorted(REWRITES))
def test_postgres_refuses_rewriting_the_new_tables(db: Session, keys: DatabaseKeyStore, table: str) -> None:
    add(db, 2)
    cps.issue(db, keys)
    cosign_latest(db, keys, "AL-SPOC")
    for statement in REWRITES[table]:
        with pytest.raises(DBAPIError, match="append-only"), db.begin_nested():
            db.execute(text(statement))


def test_the_whole_log_works_on_sqlite(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings)
    engine = make_engine(settings)
    factory = make_sessionmaker(engine)
    master = MasterKey.from_secret(settings.master_key_secret())
    with unit_of_work(factory) as session:
        seed_region(session, master, data_dir=None)
        add(session, 20, countries=("AL",))
        keys = DatabaseKeyStore(session, master)
        checkpoint = cps.issue(session, keys).checkpoint
        assert checkpoint is not None
        assert cosign_latest(session, keys, "RS-SPOC") is not None
    with factory() as session:
        report = verify_log(session)
        assert report.ok, report.line()
        assert report.checkpoints == 1
        stored = StoredTree(session)
        d = all_leaves(session)
        assert stored.root(len(d)) == merkle.root_of(d)
        for statement in (
            "UPDATE audit_nodes SET hash = x'00'",
            "DELETE FROM audit_checkpoints",
            "DELETE FROM audit_cosignatures",
        ):
            with pytest.raises(DBAPIError, match="append-only"):
                session.execute(text(statement))
            session.rollback()
    engine.dispose()
