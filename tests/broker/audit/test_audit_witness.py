"""Witnesses: contact points cosign consistent checkpoints; forks and inconsistent checkpoints become alerts."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit import checkpoints as cps
from broker.audit.actions import AuditAction
from broker.audit.models import AuditAlert, AuditCheckpoint, AuditCosignature, AuditWitnessState
from broker.audit.service import SYSTEM, record, sequence_all
from broker.audit.witness import cosign, cosign_latest, detect_forks, witness_keys, witnesses
from broker.crypto import KeyPair
from broker.crypto.note import NoteSigner, open_note, sign_note, split_note
from broker.keys.service import DatabaseKeyStore


def grow(session: Session, n: int = 3) -> None:
    for i in range(n):
        record(
            session,
            actor=SYSTEM,
            action=AuditAction.MESSAGE_QUEUED,
            object_type="message",
            object_id=f"w-{i}",
        )
    sequence_all(session)


def signed(
    session: Session, keys: DatabaseKeyStore, size: int, root: bytes, *, key: KeyPair | None = None
) -> AuditCheckpoint:
    """A checkpoint signed with the log key (or ``key``): what a misbehaving log, or its thief, could sign."""
    pair = key or keys.signing_key(cps.LOG_PARTY)
    body = cps.CheckpointBody(cps.ORIGIN, size, root, 1_800_000_000)
    row = AuditCheckpoint(
        origin=cps.ORIGIN,
        size=size,
        root=root,
        kid=pair.kid,
        note=sign_note(body.text(), NoteSigner.from_keypair(cps.ORIGIN, key=pair)),
    )
    session.add(row)
    session.flush()
    return row


def fresh(session: Session, keys: DatabaseKeyStore) -> AuditCheckpoint:
    grow(session)
    checkpoint = cps.issue(session, keys).checkpoint
    assert checkpoint is not None
    return checkpoint


def test_every_contact_point_cosigns_and_the_note_carries_verifiable_cosignatures(
    db: Session, keys: DatabaseKeyStore
) -> None:
    checkpoint = fresh(db, keys)
    names = witnesses(db)
    assert len(names) == 8
    assert {cosign(db, keys, w, checkpoint).status for w in names} == {"cosigned"}
    assert {cosign(db, keys, w, checkpoint).status for w in names} == {"already"}
    note = cps.full_note(db, checkpoint)
    _, lines = split_note(note)
    assert [s.name for s in lines] == ["spoc/audit-log", *[f"spoc/witness/{w}" for w in names]]
    verified = open_note(note, verifiers=list(witness_keys(db).values()))
    assert len(verified.signers) == 8
    assert all(t is not None and t > 1_700_000_000 for t in verified.times)
    state = db.get(AuditWitnessState, "AL-SPOC")
    assert state is not None
    assert (state.size, state.root, state.checkpoint_id) == (checkpoint.size, checkpoint.root, checkpoint.id)
    described = cps.describe(db, checkpoint)
    assert [c["witness"] for c in described["cosignatures"]] == names
    # The next, larger checkpoint is consistent with what each witness saw: cosigned again.
    later = fresh(db, keys)
    assert cosign(db, keys, "AL-SPOC", later).status == "cosigned"
    # An older one is checked but not cosigned (a cosignature says "the largest tree I have seen").
    assert cosign(db, keys, "AL-SPOC", checkpoint).status == "older"


def test_two_roots_for_one_size_are_a_fork(db: Session, keys: DatabaseKeyStore) -> None:
    honest = fresh(db, keys)
    assert cosign(db, keys, "RS-SPOC", honest).status == "cosigned"
    forked = signed(db, keys, honest.size, b"\x66" * 32)
    outcome = cosign(db, keys, "RS-SPOC", forked)
    assert outcome.status == "alert"
    assert "two trees of size" in outcome.detail
    assert (
        db.scalar(select(AuditCosignature).where(AuditCosignature.checkpoint_id == forked.id)) is None
    )  # never cosigned
    alerts = detect_forks(db)
    assert [
        (a.kind, a.checkpoint_id, a.other_checkpoint_id) for a in alerts if a.checkpoint_id == forked.id
    ] == [("fork", forked.id, honest.id)]
    assert detect_forks(db) == alerts  # raised once, not on every run
    kinds = {a.kind for a in db.scalars(select(AuditAlert).where(AuditAlert.checkpoint_id == forked.id))}
    assert kinds == {"fork"}


def test_an_inconsistent_larger_checkpoint_is_refused_with_an_alert(
    db: Session, keys: DatabaseKeyStore
) -> None:
    honest = fresh(db, keys)
    assert cosign(db, keys, "XK-SPOC", honest).status == "cosigned"
    grow(db, 5)
    size = honest.size + 5
    bogus = signed(db, keys, size, b"\x13" * 32)  # not the root of any extension of the honest tree
    outcome = cosign(db, keys, "XK-SPOC", bogus)
    assert outcome.status == "alert"
    assert "not consistent" in outcome.detail
    alert = db.scalar(select(AuditAlert).where(AuditAlert.checkpoint_id == bogus.id))
    assert alert is not None
    assert (alert.kind, alert.reporter, alert.other_checkpoint_id) == ("inconsistent", "XK-SPOC", honest.id)
    state = db.get(AuditWitnessState, "XK-SPOC")
    assert state is not None
    assert state.checkpoint_id == honest.id  # the witness did not move on to the bogus tree
    # A checkpoint claiming more entries than the log holds cannot be proven either.
    beyond = signed(db, keys, size + 1000, b"\x14" * 32)
    assert cosign(db, keys, "XK-SPOC", beyond).status == "alert"


def test_a_checkpoint_not_signed_by_the_log_key_is_never_cosigned(
    db: Session, keys: DatabaseKeyStore
) -> None:
    honest = fresh(db, keys)
    thief = signed(db, keys, honest.size, honest.root, key=KeyPair.generate("sig"))
    outcome = cosign(db, keys, "HR-SPOC", thief)
    assert (outcome.status, outcome.detail) == (
        "alert",
        f"checkpoint {thief.id} does not carry a valid log signature",
    )
    assert cosign_latest(db, keys, "HR-SPOC") == outcome  # the latest is the thief's; still refused
