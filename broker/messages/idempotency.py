"""``Idempotency-Key`` on agency POSTs: the same key and body give the same answer; another body, 409.

A key is remembered per agency, with the SHA-256 of the exact request body and the answer given, in the
same transaction as the effect of the request: either both are kept or neither. Keys are kept for
``idempotency_ttl_seconds`` (24 h by default); an expired key counts as new, and ``purge`` (an hourly
beat task) deletes expired ones.

Two concurrent requests with one key: on PostgreSQL the first takes a transaction-level advisory lock
on (agency, key) and the second waits for its commit, then replays its answer. Elsewhere (SQLite
serialises writers anyway) the loser's insert fails on the primary key and the API answers 409.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from broker.db import utcnow
from broker.errors import Conflict, InvalidInput
from broker.messages.models import IdempotencyRecord

MAX_KEY_LENGTH = 200
_LOOK = "SELECT body_hash, status_code, response FROM idempotency_records WHERE agency_id = %s AND key = %s"


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise InvalidInput(f"Idempotency-Key must be 1..{MAX_KEY_LENGTH} printable ASCII characters")


def replay(
    session: Session,
    *,
    agency_id: str,
    key: str,
    body: bytes,
    ttl_seconds: float | None = None,
    lock: bool = True,
) -> tuple[int, dict[str, Any]] | None:
    """The stored answer to (agency, key) if the body matches; None if the key is new (or expired).

    ``lock=False``: only a look (a request in a group commit, ``broker.messages.group``, whose writer takes
    the lock and looks again in the transaction that writes the answer)."""
    check_key(key)
    if not lock and ttl_seconds is None and session.get_bind().dialect.name == "postgresql":
        found = session.connection().exec_driver_sql(_LOOK, (agency_id, key)).first()
        if found is None:
            return None
        if found[0] != body_hash(body):
            raise Conflict("this Idempotency-Key was already used with a different request body")
        return found[1], found[2]
    if lock and session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
            {"k": f"idem\x1f{agency_id}\x1f{key}"},
        )
    row = session.get(IdempotencyRecord, (agency_id, key), populate_existing=True)
    if row is None:
        return None
    if ttl_seconds is not None and row.created_at < utcnow() - timedelta(seconds=ttl_seconds):
        session.delete(row)  # expired: the key is free again
        session.flush()
        return None
    if row.body_hash != body_hash(body):
        raise Conflict("this Idempotency-Key was already used with a different request body")
    return row.status_code, row.response


def remember(
    session: Session, *, agency_id: str, key: str, body: bytes, status: int, response: dict[str, Any]
) -> None:
    session.add(
        IdempotencyRecord(
            agency_id=agency_id, key=key, body_hash=body_hash(body), status_code=status, response=response
        )
    )
    session.flush()


def purge(session: Session, *, ttl_seconds: float) -> int:
    """Delete keys older than ``ttl_seconds``; returns how many."""
    cutoff = utcnow() - timedelta(seconds=ttl_seconds)
    result = session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
