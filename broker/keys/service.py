"""The key registry and the broker's key store.

Public keys of every party live in ``party_keys``; private keys the broker holds (contact points, the
log signer) are stored sealed under the master key (``MasterKey.encrypt(..., context=kid)``, so a
sealed key copied onto another row does not open). ``KeyStore`` is the one interface the rest of the
code uses; ``DatabaseKeyStore`` implements it, and a KMS/HSM-backed store could replace it.

Decrypted private keys are cached per process by kid: loading and unsealing a key on every request
would cost more than the signature it makes. The cache is keyed by kid, so rotation (a new kid) needs
no invalidation. Public keys and their status come from a registry snapshot that every request checks
against the registry's stamp (``DatabaseKeyStore``), so a revocation is seen by the next request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, cast, runtime_checkable

from sqlalchemy import Table, delete, event, func, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.crypto import KeyPair, MasterKey, PublicKey
from broker.crypto.httpsig import VerifiedRequest, request_failure
from broker.db import read_stamp, register_stamp, utcnow
from broker.errors import Conflict, InvalidInput, NotFound, PolicyRefused, VerificationError
from broker.keys.models import PartyKey, SeenNonce


class KeyRevoked(PolicyRefused):
    """A message or call signed with a revoked key. Said plainly: the signer needs to know."""


@runtime_checkable
class KeyStore(Protocol):
    def signing_key(self, party_id: str) -> KeyPair: ...
    def encryption_keys(self, party_id: str) -> list[KeyPair]: ...
    def resolve(self, kid: str, *, party_id: str | None = None, use: str = "sig") -> PublicKey: ...


_private_cache: dict[str, KeyPair] = {}
_public_cache: dict[str, PublicKey] = {}
_cache_lock = threading.Lock()


def public_key(row: PartyKey) -> PublicKey:
    """The parsed public key of a registry row, cached by kid.

    Safe to cache forever: a kid *is* the RFC 7638 thumbprint of the key, so one kid can never name
    another key. Status (revoked, retired) is never cached; it is read from the row each time.
    """
    cached = _public_cache.get(row.kid)
    if cached is None:
        cached = PublicKey.from_jwk(row.public_jwk)
        _public_cache[row.kid] = cached
    return cached


def register_public(session: Session, *, party_id: str, key: PublicKey) -> PartyKey:
    row = PartyKey(kid=key.kid, party_id=party_id, use=key.use, public_jwk=dict(key.jwk))
    session.add(row)
    session.flush()
    return row


def create_held_key(session: Session, master: MasterKey, *, party_id: str, use: str) -> KeyPair:
    """Generate a key the broker holds for ``party_id`` and store it sealed under the master key."""
    pair = KeyPair.generate("sig" if use == "sig" else "enc")
    sealed = master.encrypt(pair.private_jwk_json().encode(), context=pair.kid)
    session.add(
        PartyKey(
            kid=pair.kid,
            party_id=party_id,
            use=pair.use,
            public_jwk=dict(pair.public.jwk),
            private_sealed=sealed,
        )
    )
    session.flush()
    return pair


def public_jwks(session: Session, party_id: str) -> dict[str, list[dict[str, object]]]:
    """The keys of a party that verify or can be encrypted to, oldest first: the newest of a use is current.

    Retired keys stay listed so signatures they made keep verifying; revoked keys are left out (their
    history is in ``registry``).
    """
    rows = session.scalars(
        select(PartyKey)
        .where(PartyKey.party_id == party_id, PartyKey.status == "active")
        .order_by(PartyKey.created_at)
    ).all()
    return {"keys": [dict(r.public_jwk) for r in rows]}


@dataclass(frozen=True)
class _KeyView:
    """What the store needs of one registry row, detached from any session."""

    kid: str
    party_id: str
    use: str
    status: str
    created_at: datetime
    retired_at: datetime | None
    revoked_at: datetime | None
    revocation_reason: str | None
    private_sealed: str | None
    public: PublicKey


@dataclass(frozen=True)
class _Snapshot:
    by_kid: dict[str, _KeyView]
    by_party: dict[tuple[str, str], list[_KeyView]]  # (party, use) -> newest first


_STAMP = select(
    func.count(), func.max(PartyKey.created_at), func.max(PartyKey.retired_at), func.max(PartyKey.revoked_at)
)
register_stamp("party_keys", _STAMP)
_snapshots: dict[tuple[object, ...], _Snapshot] = {}


def _changed_party_keys(session: Session, _flush_context: object) -> None:
    if any(isinstance(o, PartyKey) for o in (*session.new, *session.dirty, *session.deleted)):
        session.info["party_keys_changes"] = session.info.get("party_keys_changes", 0) + 1


event.listen(Session, "after_flush", _changed_party_keys)


class DatabaseKeyStore:
    """``KeyStore`` over the ``party_keys`` table; private keys unsealed with ``master``.

    No per-request key loading: the registry is read into a process-wide snapshot, and a request costs
    one small aggregate query (row count and the latest created/retired/revoked time), the registry's
    *stamp*. Keys are never deleted and every status change sets its time, so any change anywhere (any
    process) changes the stamp and the next request reloads: a revocation takes effect at once. Within a
    session, a flush that touches ``party_keys`` makes the store read the stamp again.
    """

    def __init__(self, session: Session, master: MasterKey) -> None:
        self._session = session
        self._master = master
        self._memo: tuple[int, _Snapshot] | None = None

    def _snapshot(self) -> _Snapshot:
        changes = self._session.info.get("party_keys_changes", 0)
        if self._memo is not None and self._memo[0] == changes:
            return self._memo[1]
        stamp = read_stamp(self._session, "party_keys")
        snapshot = _snapshots.get(stamp)
        if snapshot is None:
            snapshot = self._load()
            with _cache_lock:
                if len(_snapshots) >= 8:
                    _snapshots.clear()
                _snapshots[stamp] = snapshot
        self._memo = (self._session.info.get("party_keys_changes", 0), snapshot)
        return snapshot

    def _load(self) -> _Snapshot:
        by_kid: dict[str, _KeyView] = {}
        by_party: dict[tuple[str, str], list[_KeyView]] = {}
        for row in self._session.scalars(select(PartyKey).order_by(PartyKey.created_at.desc())):
            view = _KeyView(
                kid=row.kid,
                party_id=row.party_id,
                use=row.use,
                status=row.status,
                created_at=row.created_at,
                retired_at=row.retired_at,
                revoked_at=row.revoked_at,
                revocation_reason=row.revocation_reason,
                private_sealed=row.private_sealed,
                public=public_key(row),
            )
            by_kid[view.kid] = view
            by_party.setdefault((view.party_id, view.use), []).append(view)
        return _Snapshot(by_kid, by_party)

    def _unseal(self, row: _KeyView) -> KeyPair:
        with _cache_lock:
            cached = _private_cache.get(row.kid)
        if cached is not None:
            return cached
        if row.private_sealed is None:
            raise NotFound(f"the broker does not hold a private key for {row.party_id}")
        pair = KeyPair.from_private_jwk(self._master.decrypt(row.private_sealed, context=row.kid).decode())
        with _cache_lock:
            _private_cache[row.kid] = pair
        return pair

    def _active(self, party_id: str, use: str) -> list[_KeyView]:
        return [k for k in self._snapshot().by_party.get((party_id, use), []) if k.status == "active"]

    def holds(self, party_id: str) -> bool:
        """Whether this node holds ``party_id``'s current signing key (its own contact points, its log): from
        the snapshot, no query. A party it only knows by public keys (another node's) is not held."""
        return any(k.private_sealed is not None for k in self._active(party_id, "sig"))

    def signing_key(self, party_id: str) -> KeyPair:
        rows = self._active(party_id, "sig")
        if not rows:
            raise NotFound(f"no active signing key for {party_id}")
        return self._unseal(rows[0])

    def encryption_keys(self, party_id: str) -> list[KeyPair]:
        """Held decryption keys, newest first: active and retired (what was sealed to a retired key stays readable)."""
        rows = self._snapshot().by_party.get((party_id, "enc"), [])
        return [
            self._unseal(r)
            for r in rows
            if r.status in ("active", "retired") and r.private_sealed is not None
        ]

    def _row(self, kid: str, party_id: str | None, use: str) -> _KeyView:
        row = self._snapshot().by_kid.get(kid)
        if row is None or row.use != use or (party_id is not None and row.party_id != party_id):
            raise VerificationError("unknown signing key")
        if row.status == "revoked":
            when = row.revoked_at.isoformat() if row.revoked_at else "an earlier time"
            raise KeyRevoked(
                f"the key {kid} of {row.party_id} was revoked at {when}: {row.revocation_reason}"
            )
        return row

    def registered(self, kid: str) -> _KeyView | None:
        """The registry's entry for ``kid`` whatever its status (the caller decides what a status means)."""
        return self._snapshot().by_kid.get(kid)

    def resolve(self, kid: str, *, party_id: str | None = None, use: str = "sig") -> PublicKey:
        """The public key ``kid``, if it exists, belongs to ``party_id`` and is not revoked."""
        return self._row(kid, party_id, use).public

    def resolve_at(self, kid: str, *, party_id: str, at: datetime) -> PublicKey:
        """Like ``resolve``, for a signature dated ``at``: a retired key only signs what predates its retirement."""
        row = self._row(kid, party_id, "sig")
        if row.status == "retired" and row.retired_at is not None and at > row.retired_at:
            raise KeyRevoked(
                f"the key {kid} of {party_id} was retired at {row.retired_at.isoformat()}; "
                "sign with the current key"
            )
        return row.public

    def public_encryption_key(self, party_id: str) -> PublicKey:
        rows = self._active(party_id, "enc")
        if not rows:
            raise NotFound(f"no active encryption key for {party_id}")
        return rows[0].public


_SEEN_NONCES = cast(Table, SeenNonce.__table__)
_REMEMBER = (
    "INSERT INTO seen_nonces (kid, nonce, created_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (kid, nonce) DO NOTHING RETURNING kid"
)


def remember_nonce(session: Session, verified: VerifiedRequest) -> None:
    """Record a signed request's nonce; a second request with the same (key, nonce) is a replay.

    One ``INSERT ... ON CONFLICT DO NOTHING`` (PostgreSQL and SQLite both have it): no savepoint round trips
    on the hot path, and the primary key still decides between two concurrent uses of one nonce — the
    second insert waits for the first transaction and then inserts nothing.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":  # every agency request: driver SQL, past the compiler
        row = connection.exec_driver_sql(_REMEMBER, (verified.kid, verified.nonce[:128], utcnow())).first()
    else:
        statement = (
            sqlite_insert(_SEEN_NONCES)
            .values(kid=verified.kid, nonce=verified.nonce[:128], created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["kid", "nonce"])
            .returning(_SEEN_NONCES.c.kid)
        )
        row = session.execute(statement).first()
    if row is None:
        raise request_failure(
            "nonce", "this request's nonce was already used with this key: a replay; sign every request anew"
        )


def forget_old_nonces(session: Session, *, older_than_seconds: int) -> int:
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    result = session.execute(delete(SeenNonce).where(SeenNonce.created_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


# --- lifecycle: rotation and revocation ---------------------------------------------------------


def _party_countries(party_id: str) -> list[str]:
    prefix = party_id.split("-", 1)[0]
    return [prefix] if len(prefix) == 2 and prefix.isupper() else []


def _retire(session: Session, party_id: str, use: str, *, actor: Actor) -> list[str]:
    now = utcnow()
    retired = []
    for row in session.scalars(
        select(PartyKey).where(
            PartyKey.party_id == party_id, PartyKey.use == use, PartyKey.status == "active"
        )
    ):
        row.status, row.retired_at = "retired", now
        retired.append(row.kid)
        record(
            session,
            actor=actor,
            action=AuditAction.KEY_RETIRED,
            object_type="key",
            object_id=row.kid,
            countries=_party_countries(party_id),
            details={"party": party_id, "use": use},
        )
    return retired


def rotate_held(session: Session, master: MasterKey, *, party_id: str, actor: Actor) -> list[KeyPair]:
    """New signing and encryption keys for a party the broker holds keys for; the old ones are retired.

    Retired keys keep verifying what they signed and keep decrypting what was sealed to them; new
    signatures and new readers use the new keys.
    """
    existing = session.scalars(
        select(PartyKey).where(PartyKey.party_id == party_id, PartyKey.status == "active")
    ).all()
    if not existing or any(r.private_sealed is None for r in existing):
        raise NotFound(f"the broker holds no keys for {party_id}; agencies rotate their own keys")
    uses = sorted({r.use for r in existing})
    new = []
    for use in uses:
        _retire(session, party_id, use, actor=actor)
        pair = create_held_key(session, master, party_id=party_id, use=use)
        record(
            session,
            actor=actor,
            action=AuditAction.KEY_CREATED,
            object_type="key",
            object_id=pair.kid,
            countries=_party_countries(party_id),
            details={"party": party_id, "use": use, "rotation": True},
        )
        new.append(pair)
    session.flush()
    return new


def register_agency_key(session: Session, *, agency_id: str, key: PublicKey, actor: Actor) -> PartyKey:
    """An agency publishes a new public key of one use; its previous active key of that use is retired."""
    if session.get(PartyKey, key.kid) is not None:
        raise Conflict("this key is already registered")
    _retire(session, agency_id, key.use, actor=actor)
    row = register_public(session, party_id=agency_id, key=key)
    record(
        session,
        actor=actor,
        action=AuditAction.KEY_CREATED,
        object_type="key",
        object_id=key.kid,
        countries=_party_countries(agency_id),
        details={"party": agency_id, "use": key.use, "rotation": True},
    )
    return row


def revoke(session: Session, *, kid: str, reason: str, actor: Actor) -> PartyKey:
    """Revoke a key: from now on the broker refuses anything it signs; what it signed before stays valid."""
    if not reason.strip():
        raise InvalidInput("a revocation needs a reason")
    row = session.get(PartyKey, kid)
    if row is None:
        raise NotFound(f"no key {kid}")
    if row.status == "revoked":
        raise Conflict(f"key {kid} was already revoked at {row.revoked_at}")
    row.status, row.revoked_at, row.revocation_reason = "revoked", utcnow(), reason.strip()[:500]
    record(
        session,
        actor=actor,
        action=AuditAction.KEY_REVOKED,
        object_type="key",
        object_id=kid,
        countries=_party_countries(row.party_id),
        details={"party": row.party_id, "use": row.use, "reason": reason},
    )
    session.flush()
    return row


def registry(session: Session, party_id: str) -> list[dict[str, object]]:
    """Every key a party ever had, with its status and times: what a verifier needs to judge old signatures."""
    rows = session.scalars(
        select(PartyKey).where(PartyKey.party_id == party_id).order_by(PartyKey.created_at)
    ).all()

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return [
        {
            "kid": r.kid,
            "use": r.use,
            "status": r.status,
            "jwk": dict(r.public_jwk),
            "created_at": iso(r.created_at),
            "retired_at": iso(r.retired_at),
            "revoked_at": iso(r.revoked_at),
            "revocation_reason": r.revocation_reason,
        }
        for r in rows
    ]
