"""Writing, sequencing and verifying the audit log.

Three steps, for speed and for integrity under concurrency:

1. ``record()`` adds an ``AuditEntry`` and an ``AuditPending`` row in the caller's transaction, so an
   entry exists if and only if the change it records committed. It never reads other entries.
2. ``sequence_pending()`` — one sequencer at a time (a PostgreSQL advisory lock; SQLite's write lock) —
   takes a batch of committed pending entries in id order, gives them the next consecutive positions,
   computes each RFC 6962 leaf hash ``SHA-256(0x00 || canonical(entry))`` (canonical = RFC 8785) and a
   running chain hash ``SHA-256(prev_chain || leaf)``, inserts the leaves with the canonical bytes they
   hash (``document``, so that verification need not rebuild them), stores the Merkle subtrees the
   batch completes (``broker.audit.tree``) and clears the queue. Batches make appends cheap; the lock
   makes forks impossible. The chain hash predates the tree and is kept: it pins each leaf to its
   predecessor, which lets the verifier name the exact position of a rewrite.
3. ``verify_log()`` recomputes every leaf, link, stored subtree and signed checkpoint root from the
   stored entries and names the first bad position (``broker.audit.verify``).

Entries never hold message content: ids, parties, countries, decisions and outcomes only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from broker.audit import merkle, tree
from broker.audit.actions import AuditAction
from broker.audit.models import AuditEntry, AuditLeaf, AuditPending
from broker.crypto.canonical import canonical
from broker.db import utcnow

GENESIS = "00" * 32


@dataclass(frozen=True)
class Actor:
    """Who did it: a username, an agency id, or a system component, with its role."""

    name: str
    role: str
    request_id: str | None = None


SYSTEM = Actor(name="spoc", role="system")

CLIENT_REQUEST_ID: ContextVar[str | None] = ContextVar("spoc_client_request_id", default=None)
"""The ``X-Request-ID`` the caller sent (printable, short), set by the HTTP edge for the request it handles.

An entry's ``request_id`` is always the server's own id (``Actor.request_id``): a caller cannot choose it.
The caller's value is only a correlation aid for them and goes into ``details.client_request_id``. A
context variable rather than a field of ``Actor`` because every entry written while handling the request
carries it, whichever of the many places that build an ``Actor`` wrote it (Starlette copies the context
into the thread that runs a sync route)."""


def record(
    session: Session,
    *,
    actor: Actor,
    action: AuditAction,
    object_type: str,
    object_id: str | None,
    countries: Iterable[str] = (),
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        at=utcnow(),
        actor=actor.name,
        role=actor.role,
        action=str(action),
        object_type=object_type,
        object_id=object_id,
        countries=sorted(set(countries)),
        outcome=outcome,
        request_id=actor.request_id,
        details=_with_client_request_id(details or {}),
        pending=AuditPending(),
    )
    session.add(entry)
    return entry


def _with_client_request_id(details: dict[str, Any]) -> dict[str, Any]:
    client_id = CLIENT_REQUEST_ID.get()
    if client_id is None or "client_request_id" in details:
        return details
    return {**details, "client_request_id": client_id}


class EntryFields(Protocol):
    """An audit entry's fields: an ``AuditEntry`` or a plain row of ``audit_entries`` (the sequencer's)."""

    @property
    def id(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def object_type(self) -> str: ...
    @property
    def object_id(self) -> str | None: ...
    @property
    def countries(self) -> list[str]: ...
    @property
    def outcome(self) -> str: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def details(self) -> dict[str, Any]: ...


def entry_document(entry: EntryFields) -> dict[str, Any]:
    """The exact document hashed into the log: every field, times as RFC 3339 UTC with microseconds."""
    return {
        "id": entry.id,
        "at": entry.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "countries": list(entry.countries),
        "outcome": entry.outcome,
        "request_id": entry.request_id,
        "details": entry.details,
    }


def leaf_hash(document: dict[str, Any]) -> bytes:
    """RFC 6962 leaf hash of an entry: ``SHA-256(0x00 || RFC 8785 canonical JSON of its document)``."""
    return merkle.leaf_hash(canonical(document))


def chain_hash(previous_hex: str, leaf: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(previous_hex) + leaf).hexdigest()


def sequence_pending(session: Session, *, limit: int = 5000) -> int:
    """Append up to ``limit`` committed pending entries to the log; returns how many were appended.

    Under the log lock (``tree.lock_log``) the last position is read and extended by one writer at a
    time; entries committed by other transactions meanwhile wait in the queue for the next batch.
    """
    tree.lock_log(session)
    # Plain rows, not ORM objects: nothing here is modified, and the identity map would cost more than
    # the hashing.
    connection = session.connection()
    entries = connection.execute(
        select(AuditEntry.__table__)
        .join(AuditPending, AuditPending.entry_id == AuditEntry.id)
        .order_by(AuditEntry.id)
        .limit(limit)
    ).all()
    if not entries:
        return 0
    ids = [entry.id for entry in entries]
    last = session.execute(
        select(AuditLeaf.seq, AuditLeaf.chain_hash).order_by(AuditLeaf.seq.desc()).limit(1)
    ).first()
    seq, prev = (last[0] + 1, last[1]) if last else (0, GENESIS)
    first = seq
    rows = []
    leaves = []
    for entry in entries:
        document = canonical(entry_document(entry))
        leaf = merkle.leaf_hash(document)
        prev = chain_hash(prev, leaf)
        rows.append(
            {
                "seq": seq,
                "entry_id": entry.id,
                "leaf_hash": leaf.hex(),
                "chain_hash": prev,
                "document": document,
            }
        )
        leaves.append(leaf)
        seq += 1
    tree.insert_rows(session, AuditLeaf, rows)
    tree.extend(session, first, leaves)
    # "fetch" keeps queue rows this session holds in step with the delete.
    session.execute(
        delete(AuditPending).where(tree.among(AuditPending.entry_id, ids, connection.dialect.name)),
        execution_options={"synchronize_session": "fetch"},
    )
    session.flush()
    return len(rows)


def sequence_all(session: Session, *, batch: int = 5000) -> int:
    """Append everything pending, ``batch`` entries at a time, in the caller's transaction."""
    total = 0
    while n := sequence_pending(session, limit=batch):
        total += n
    return total


@dataclass(frozen=True)
class LogReport:
    """The outcome of a full verification: size, Merkle root and chain head, or the first bad position.

    ``first_bad_seq`` is exact when one entry, leaf or link is wrong; when a whole suffix was rewritten
    consistently (entries, leaves, links and nodes) only the signed checkpoints can tell, and the report
    names the first position after the last checkpoint that still matches.
    """

    ok: bool
    size: int
    head: str
    pending: int
    first_bad_seq: int | None = None
    problem: str | None = None
    root: str = ""
    checkpoints: int = 0

    def line(self) -> str:
        if self.ok:
            return (
                f"audit log verified: {self.size} entries, root {self.root[:16]}…, "
                f"{self.checkpoints} signed checkpoints match, {self.pending} pending"
            )
        return f"audit log FAILED at position {self.first_bad_seq}: {self.problem}"


def verify_log(session: Session, *, batch: int = 16384) -> LogReport:
    """Recompute every leaf, link, subtree and checkpoint root; stop at and name the first bad position.

    The work is in ``broker.audit.verify`` (imported here, late, because it needs the checkpoint and alert
    modules, which themselves record audit entries through this one).
    """
    from broker.audit.verify import verify_stored_log

    return verify_stored_log(session, batch=batch)
