"""A log's origin: the legacy ``spoc/audit-log`` outside a region, the name the regional directory gives the
node's log key once it joins one; checkpoints signed under the old origin keep verifying (database and bundle)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from broker.audit import checkpoints as cps
from broker.audit.actions import AuditAction
from broker.audit.bundle import verify_bundle
from broker.audit.export import export_bundle
from broker.audit.search import EntryFilter, Scope
from broker.audit.service import SYSTEM, Actor, record, sequence_all, verify_log
from broker.crypto import KeyPair
from broker.crypto.note import COSIGNATURE_V1, NoteKey, NoteSigner
from broker.db import utcnow
from broker.keys.service import DatabaseKeyStore
from broker.region.models import InstalledDirectory


def _grow(session: Session) -> None:
    for i in range(3):
        record(
            session, actor=SYSTEM, action=AuditAction.MESSAGE_QUEUED, object_type="message", object_id=f"o{i}"
        )
    sequence_all(session)


def test_joining_a_region_renames_the_log_and_old_checkpoints_still_verify(
    db: Session, keys: DatabaseKeyStore
) -> None:
    _grow(db)
    before = cps.issue(db, keys).checkpoint
    assert before is not None
    assert before.origin == cps.ORIGIN
    # The node joins a region whose directory lists its log key under its own name.
    log_key = NoteKey.from_public_key("spoc/hub/audit-log", keys.signing_key(cps.LOG_PARTY).public)
    other = NoteSigner.from_keypair(
        "spoc/witness/other", key=KeyPair.generate("sig"), sig_type=COSIGNATURE_V1
    )
    mine = NoteSigner.from_keypair("spoc/witness/hub", key=KeyPair.generate("sig"), sig_type=COSIGNATURE_V1)
    node = {
        "node_id": "hub",
        "log_key": log_key.vkey,
        "witness_key": mine.verifier.vkey,
        "contact_points": [],
    }
    peer = {
        "node_id": "other",
        "log_key": NoteKey.from_public_key("spoc/other/audit-log", KeyPair.generate("sig").public).vkey,
        "witness_key": other.verifier.vkey,
        "contact_points": [{"country": "XK"}],
    }
    now = utcnow()
    db.add(
        InstalledDirectory(
            version=10**9,
            region="test",
            digest="sha-256:test",
            signed={"directory": {"version": 10**9, "nodes": [node, peer]}, "signature": ""},
            signed_by="test",
            issued_at=now,
            valid_until=now + timedelta(days=1),
        )
    )
    db.flush()
    assert cps.log_origin(db) == "spoc/hub/audit-log"
    _grow(db)
    after = cps.issue(db, keys).checkpoint
    assert after is not None
    assert after.origin == "spoc/hub/audit-log"
    assert after.note.startswith("spoc/hub/audit-log\n")
    report = verify_log(db)
    assert report.ok, report.problem
    # The bundle: anchored on the new origin, the legacy checkpoint among the earlier ones, consistent.
    bundle = export_bundle(db, Scope(None), EntryFilter(), actor=Actor("auditor", "auditor"))
    assert bundle["origin"] == "spoc/hub/audit-log"
    verdict = verify_bundle(bundle)
    assert verdict.ok, verdict.problem
    assert verdict.earlier >= 1
    assert (
        "peer nodes' witnesses: no other country (directory version 1000000000, governance signature not pinned)"
        in verdict.line()
    )
