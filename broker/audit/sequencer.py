"""The sequencer: committed entries move from the queue into the log, one writer at a time.

Under the log lock (``tree.lock_log``: a PostgreSQL advisory lock; SQLite's write lock) a batch of
committed pending entries, in id order, gets the next consecutive positions: each entry's RFC 8785
document is hashed into its RFC 6962 leaf and the running chain link, the leaves are stored with the bytes
they hash (``document``), every Merkle subtree the batch completes is stored (``audit_nodes``), and the
batch's queue rows are deleted, all in the caller's transaction. Writers never read "the last row", so
concurrent writers cannot fork the log; entries committed meanwhile wait for the next batch.

On PostgreSQL through psycopg the batch is set-based end to end (``broker.audit.rows``): one read of the
batch, the leaves written by one binary COPY *while* they are hashed (PostgreSQL inserts the rows as they
stream in, so its work overlaps the hashing), one COPY of the nodes, one DELETE of the queue rows. When
``sequence_all`` finds a full batch and its transaction has written nothing yet (so every queued entry
is one another connection can see), a second connection reads the following batches ahead in a thread
while this one hashes and writes. The position, chain head and Merkle frontier are carried from batch to
batch rather than read back. Elsewhere (SQLite) the same steps go through SQLAlchemy.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from broker.audit import rows, tree
from broker.audit.document import GENESIS, entry_document
from broker.audit.merkle import Frontier
from broker.audit.models import AuditEntry, AuditLeaf, AuditNode, AuditPending
from broker.crypto.canonical import canonical_flat

__all__ = ["sequence_all", "sequence_pending"]

_LEAF_COLUMNS = ("seq", "entry_id", "leaf_hash", "chain_hash", "document")
_NODE_COLUMNS = ("level", "idx", "hash")
_NESTED = frozenset(("countries", "details"))  # an entry's only fields that are not plain columns


@dataclass
class _Tail:
    """Where the log ends: the next position, the last chain link and the Merkle frontier."""

    seq: int
    prev: str
    frontier: Frontier

    @classmethod
    def read(cls, session: Session) -> _Tail:
        last = session.execute(
            select(AuditLeaf.seq, AuditLeaf.chain_hash).order_by(AuditLeaf.seq.desc()).limit(1)
        ).first()
        seq, prev = (int(last[0]) + 1, str(last[1])) if last else (0, GENESIS)
        return cls(seq, prev, tree.StoredTree(session).frontier(seq))


def sequence_pending(session: Session, *, limit: int = 5000) -> int:
    """Append up to ``limit`` committed pending entries to the log; returns how many were appended."""
    tree.lock_log(session)
    with rows.no_cyclic_gc():
        documents = _pending(session, limit)
        return _append(session, documents, _Tail.read(session)) if documents else 0


def sequence_all(session: Session, *, batch: int = 5000) -> int:
    """Append everything pending, ``batch`` entries at a time, in the caller's transaction."""
    tree.lock_log(session)
    total = 0
    with rows.no_cyclic_gc():
        documents = _pending(session, batch)
        if not documents:
            return 0
        tail = _Tail.read(session)
        ahead = len(documents) == batch and rows.uses_psycopg(session) and not _has_written(session)
        total += _append(session, documents, tail)
        if ahead:
            for more in _read_ahead(session, after=int(documents[-1]["id"]), batch=batch):
                total += _append(session, more, tail)
        else:
            while documents := _pending(session, batch):
                total += _append(session, documents, tail)
    return total


def _has_written(session: Session) -> bool:
    """Whether this transaction has written (its queue rows would be invisible to another connection)."""
    return session.execute(text("SELECT txid_current_if_assigned()")).scalar() is not None


def _pending(session: Session, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` queued entries in id order, as the documents the log hashes."""
    if rows.uses_psycopg(session):
        return rows.pending_entries(session, limit)
    # Plain rows, not ORM objects: nothing here is modified, and the identity map would cost more than
    # the hashing.
    return [
        entry_document(entry)
        for entry in session.connection().execute(
            select(AuditEntry.__table__)
            .join(AuditPending, AuditPending.entry_id == AuditEntry.id)
            .order_by(AuditEntry.id)
            .limit(limit)
        )
    ]


def _read_ahead(session: Session, *, after: int, batch: int) -> Iterator[list[dict[str, Any]]]:
    """The queued entries after id ``after``, ``batch`` at a time, read by a second connection in a thread.

    It reads committed queue rows only, by id beyond the last one taken, so the rows this transaction has
    already deleted (uncommitted) never come back. An entry committed later with a lower id than one
    already taken stays queued for the next run, as it would have without reading ahead."""
    import psycopg

    own = rows.psycopg_connection(session)
    reader = psycopg.connect(own.info.dsn, password=own.info.password, autocommit=True)
    found: queue.Queue[list[dict[str, Any]] | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def read() -> None:
        cursor = after
        try:
            while not stop.is_set():
                documents = rows.pending_entries_after(reader, cursor, batch)
                if documents:
                    found.put(documents)
                    cursor = int(documents[-1]["id"])
                if len(documents) < batch:
                    break
            found.put(None)
        except BaseException as exc:
            found.put(exc)

    thread = threading.Thread(target=read, name="spoc-audit-sequencer-reader", daemon=True)
    thread.start()
    try:
        while (item := found.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting to put
            try:
                found.get(timeout=0.1)
            except queue.Empty:
                continue
        thread.join()
        reader.close()


def _append(session: Session, documents: Sequence[dict[str, Any]], tail: _Tail) -> int:
    """Give ``documents`` the next positions after ``tail`` (advanced in place); returns how many."""
    sha256 = hashlib.sha256
    frontier = tail.frontier
    nodes: list[tuple[int, int, bytes]] = []
    seq, prev = tail.seq, tail.prev

    def leaves() -> Iterator[tuple[int, int, str, str, bytes]]:
        nonlocal seq, prev
        for document in documents:
            data = canonical_flat(document, nested=_NESTED)
            leaf = sha256(b"\x00" + data).digest()  # merkle.leaf_hash, inlined: this loop is the sequencer
            prev = sha256(bytes.fromhex(prev) + leaf).hexdigest()  # document.chain_hash, inlined
            yield seq, document["id"], leaf.hex(), prev, data
            for (level, index), value in frontier.append(leaf):
                nodes.append((level, index, value))
            seq += 1

    if rows.uses_psycopg(session):
        rows.copy_rows(session, AuditLeaf.__table__, _LEAF_COLUMNS, leaves())
    else:
        tree.insert_tuples(session, AuditLeaf, _LEAF_COLUMNS, list(leaves()))
    tree.insert_tuples(session, AuditNode, _NODE_COLUMNS, nodes)
    tail.seq, tail.prev = seq, prev
    _dequeue(session, [int(document["id"]) for document in documents])
    session.flush()
    return len(documents)


def _dequeue(session: Session, ids: list[int]) -> None:
    """Delete the queue rows of ``ids`` in one statement."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # Any queue rows this session holds are forgotten: what "fetch" synchronisation did, without
        # reading every deleted row back.
        session.execute(
            delete(AuditPending).where(tree.among(AuditPending.entry_id, ids, dialect)),
            execution_options={"synchronize_session": False},
        )
        held = set(ids)
        for obj in [o for o in session.identity_map.values() if isinstance(o, AuditPending)]:
            if obj.entry_id in held:
                session.expunge(obj)
        return
    # "fetch" keeps queue rows this session holds in step with the delete.
    session.execute(
        delete(AuditPending).where(tree.among(AuditPending.entry_id, ids, dialect)),
        execution_options={"synchronize_session": "fetch"},
    )
