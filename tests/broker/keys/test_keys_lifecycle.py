"""Key changes are audit entries, and the store sees them at once (its snapshot is checked per session)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.models import AuditEntry
from broker.audit.service import Actor
from broker.config import Settings
from broker.crypto import KeyPair, MasterKey
from broker.errors import VerificationError
from broker.keys.service import DatabaseKeyStore, KeyRevoked, register_agency_key, revoke, rotate_held

OPERATOR = Actor("key-operator", "admin", "req-keys-1")


def _entries(db: Session, kid: str, *, after: int = 0) -> list[tuple[str, str, str | None]]:
    """The audit entries about ``kid`` (after entry ``after``: the database is shared with the other tests of
    the worker, some of which rotate the same contact point's keys through the command line)."""
    rows = db.scalars(
        select(AuditEntry).where(AuditEntry.object_id == kid, AuditEntry.id > after).order_by(AuditEntry.id)
    )
    return [(e.action, e.actor, e.request_id) for e in rows]


def test_rotation_retires_and_creates_with_an_audit_entry_each(
    db: Session, keys: DatabaseKeyStore, settings: Settings
) -> None:
    old_sig = keys.signing_key("ME-SPOC")
    before = db.scalar(select(func.max(AuditEntry.id))) or 0
    new = rotate_held(
        db, MasterKey.from_secret(settings.master_key_secret()), party_id="ME-SPOC", actor=OPERATOR
    )
    assert _entries(db, old_sig.kid, after=before) == [
        (AuditAction.KEY_RETIRED, "key-operator", "req-keys-1")
    ]
    for pair in new:
        assert _entries(db, pair.kid) == [(AuditAction.KEY_CREATED, "key-operator", "req-keys-1")]
    # The same store, in the same session, signs with the new key straight away.
    assert keys.signing_key("ME-SPOC").kid in {p.kid for p in new}
    assert keys.resolve(old_sig.kid, party_id="ME-SPOC").kid == old_sig.kid  # retired still verifies


def test_an_agency_key_and_its_revocation_are_audited_and_refused_at_once(
    db: Session, keys: DatabaseKeyStore, settings: Settings
) -> None:
    fresh = KeyPair.generate("sig")
    register_agency_key(db, agency_id="ME-UP", key=fresh.public, actor=OPERATOR)
    assert keys.resolve(fresh.kid, party_id="ME-UP").kid == fresh.kid
    revoke(db, kid=fresh.kid, reason="laptop stolen", actor=OPERATOR)
    assert [a for a, _, _ in _entries(db, fresh.kid)] == [AuditAction.KEY_CREATED, AuditAction.KEY_REVOKED]
    with pytest.raises(KeyRevoked, match="laptop stolen"):
        keys.resolve(fresh.kid, party_id="ME-UP")
    # A fresh store, as the next request builds, sees it too: the registry's stamp changed.
    other = DatabaseKeyStore(db, MasterKey.from_secret(settings.master_key_secret()))
    with pytest.raises(KeyRevoked):
        other.resolve(fresh.kid, party_id="ME-UP")
    with pytest.raises(VerificationError):
        keys.resolve(fresh.kid, party_id="ME-BP")  # a key is bound to its party
