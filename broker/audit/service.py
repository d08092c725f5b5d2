"""Writing, sequencing and verifying the audit log.

Three steps, for speed and for integrity under concurrency:

1. ``record()`` adds an ``AuditEntry`` and an ``AuditPending`` row in the caller's transaction, so an
   entry exists if and only if the change it records committed. It never reads other entries. The rows are
   written by the transaction's next flush, all the entries recorded since the last one together and
   set-based (``_write_recorded``: one statement takes the ids and queues them, then COPY or one multi-row
   INSERT of the entries), not
   through the unit of work, whose bookkeeping per object cost more than the rows themselves.
2. ``sequence_pending()`` / ``sequence_all()`` (``broker.audit.sequencer``) — one sequencer at a time (a
   PostgreSQL advisory lock; SQLite's write lock) — take a batch of committed pending entries in id order,
   give them the next consecutive positions, compute each RFC 6962 leaf hash ``SHA-256(0x00 ||
   canonical(entry))`` (canonical = RFC 8785, ``broker.audit.document``) and a running chain hash
   ``SHA-256(prev_chain || leaf)``, insert the leaves with the canonical bytes they hash (``document``, so
   that verification need not rebuild them), store the Merkle subtrees the batch completes
   (``broker.audit.tree``) and clear the queue. Batches make appends cheap; the lock makes forks
   impossible. The chain hash predates the tree and is kept: it pins each leaf to its predecessor, which
   lets the verifier name the exact position of a rewrite.
3. ``verify_log()`` recomputes every leaf, link, stored subtree and signed checkpoint root from the
   stored entries and names the first bad position (``broker.audit.verify``).

Entries never hold message content: ids, parties, countries, decisions and outcomes only.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, insert, inspect
from sqlalchemy.orm import Session, UOWTransaction
from sqlalchemy.orm.attributes import set_committed_value

from broker.audit.actions import AuditAction
from broker.audit.document import GENESIS, EntryFields, chain_hash, entry_document, leaf_hash
from broker.audit.models import AuditEntry, AuditPending
from broker.audit.sequencer import sequence_all, sequence_pending
from broker.db import insert_all, new_row, utcnow

__all__ = [
    "CLIENT_REQUEST_ID",
    "GENESIS",
    "SYSTEM",
    "Actor",
    "EntryFields",
    "LogReport",
    "chain_hash",
    "entry_document",
    "leaf_hash",
    "record",
    "sequence_all",
    "sequence_pending",
    "verify_log",
]


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
    """Record an entry in ``session``'s transaction; it is written (and learns its ``id``) at the next flush."""
    # Built without the declarative constructor's per-attribute events (a tenth of the cost): the entry is
    # never written through the unit of work (see _write_recorded), which reads these values as they are.
    entry = new_row(
        AuditEntry,
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
    )
    session.add(entry)  # pending: the session is dirty, so the next flush (or commit) runs _write_recorded
    session.info.setdefault(_RECORDED, []).append(entry)
    return entry


#: ``session.info`` key: the entries ``record`` added since the last flush, in the order recorded.
_RECORDED = "spoc.audit.recorded"

_ENTRY_KEYS = tuple(
    prop.key for prop in inspect(AuditEntry).column_attrs if prop.key != "id"
)  # every column record() sets


# The entries' ids, taken from their sequence and queued for the sequencer by the same statement.
_QUEUE_NEXT_IDS = (
    "INSERT INTO audit_pending (entry_id) "
    "SELECT nextval(pg_get_serial_sequence('audit_entries', 'id')) FROM generate_series(1, %s) "
    "RETURNING entry_id"
)


def _write_recorded(session: Session, _context: UOWTransaction, _instances: object) -> None:
    """Before a flush: write the entries recorded since the last one, and their queue rows, set-based.

    The entries leave the unit of work (expunged, then written by us; they keep their values and learn
    their ``id``). Ids follow the order of recording, as the unit of work gave them, and the sequencer
    appends a transaction's entries in id order. An entry whose ``record`` was undone before this flush
    (its savepoint or transaction rolled back, which expunges it) is no longer pending and is not written.
    """
    recorded = session.info.pop(_RECORDED, None)
    if not recorded:
        return
    entries = [entry for entry in recorded if inspect(entry).pending]
    if not entries:
        return
    for entry in entries:
        session.expunge(entry)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # Ids first, queued by the same statement (one round trip; no foreign key, migration 0015), so the
        # entries can go by COPY, which returns nothing, or by ``insert_all``'s few-rows INSERT, built past
        # the compiler (a RETURNING that keeps the order of the rows costs SQLAlchemy's sentinel machinery
        # more than the statement). A sequence hands out increasing ids: sorted, they follow the recording.
        ids = sorted(connection.exec_driver_sql(_QUEUE_NEXT_IDS, (len(entries),)).scalars())
        for entry, entry_id in zip(entries, ids, strict=True):
            set_committed_value(entry, "id", entry_id)
        insert_all(session, entries)
        return
    rows = [{key: entry.__dict__[key] for key in _ENTRY_KEYS} for entry in entries]
    statement = insert(AuditEntry).returning(AuditEntry.id, sort_by_parameter_order=True)
    ids = list(connection.execute(statement, rows[0] if len(rows) == 1 else rows).scalars())
    for entry, entry_id in zip(entries, ids, strict=True):
        set_committed_value(entry, "id", entry_id)
    insert_all(session, [new_row(AuditPending, entry_id=entry_id) for entry_id in ids])


event.listen(Session, "before_flush", _write_recorded)


def _with_client_request_id(details: dict[str, Any]) -> dict[str, Any]:
    client_id = CLIENT_REQUEST_ID.get()
    if client_id is None or "client_request_id" in details:
        return details
    return {**details, "client_request_id": client_id}


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
