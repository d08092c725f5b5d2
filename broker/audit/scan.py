"""Reading the stored log for full verification, in position order, a batch at a time.

Each row a source yields is ``(seq, entry_id, leaf_hash, chain_hash, document, entry)``: the leaf's own
columns (``document`` the canonical bytes the sequencer hashed, None for leaves appended before it kept
them) and ``entry``, the document rebuilt from the entry's columns exactly as the sequencer builds it
(``entry_document``), or None when the entry is missing. Comparing the two, and hashing, is the
verifier's job (``broker.audit.verify``); a source only reads.

Two sources:

* :func:`postgres_batches` reads with psycopg directly, in binary (no hex decoding of bytes, ``jsonb``
  parsed by orjson), one join of leaves and entries per range of positions, and the tree nodes the range
  completes. When the verifying transaction has written nothing, two more connections read the ranges
  ahead in threads on the same snapshot (``pg_export_snapshot``), so PostgreSQL producing the next ranges
  overlaps Python checking this one; a transaction with writes of its own (which another connection
  cannot see), or inside a savepoint (which cannot export its snapshot), reads on its own connection.
* :func:`generic_batches` reads through SQLAlchemy on any database (SQLite, the embedded default).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from broker.audit.document import entry_document
from broker.audit.merkle import Node
from broker.audit.models import AuditEntry, AuditLeaf, AuditNode
from broker.audit.rows import ENTRY_COLUMNS, entry_from_columns, psycopg_connection
from broker.audit.tree import among

__all__ = ["Batch", "Row", "completed_ranges", "generic_batches", "postgres_batches", "stored_nodes"]

Row = tuple[int, int, str, str, bytes | None, dict[str, Any] | None]
"""``(seq, entry_id, leaf_hash, chain_hash, document, entry)``: see the module docstring."""


@dataclass
class Batch:
    rows: list[Row]
    nodes: dict[Node, bytes] | None  # the stored nodes the batch completes, or None: ask ``stored_nodes``


def stored_nodes(session: Session, computed: dict[Node, bytes]) -> dict[Node, bytes]:
    """The stored nodes among ``computed``: one range condition per level (they are contiguous)."""
    spans: dict[int, list[int]] = {}
    for level, index in computed:
        low_high = spans.setdefault(level, [index, index])
        low_high[0], low_high[1] = min(low_high[0], index), max(low_high[1], index)
    if not spans:
        return {}
    rows = session.execute(
        select(AuditNode.level, AuditNode.idx, AuditNode.hash).where(
            or_(
                *(
                    and_(AuditNode.level == lv, AuditNode.idx.between(lo, hi))
                    for lv, (lo, hi) in spans.items()
                )
            )
        )
    ).all()
    return {(int(lv), int(ix)): bytes(h) for lv, ix, h in rows}


def generic_batches(session: Session, batch: int) -> Iterator[Batch]:
    """Any database, through SQLAlchemy Core: leaves by keyset, then their entries by id."""
    after = 0
    while True:
        connection = session.connection()
        leaves: Sequence[Any] = connection.execute(
            select(AuditLeaf.__table__).where(AuditLeaf.seq >= after).order_by(AuditLeaf.seq).limit(batch)
        ).all()
        if not leaves:
            return
        entries = {
            e.id: e
            for e in connection.execute(
                select(AuditEntry.__table__).where(
                    among(AuditEntry.id, [leaf.entry_id for leaf in leaves], connection.dialect.name)
                )
            )
        }
        rows: list[Row] = []
        for leaf in leaves:
            entry = entries.get(leaf.entry_id)
            document = None if leaf.document is None else bytes(leaf.document)
            rows.append(
                (
                    leaf.seq,
                    leaf.entry_id,
                    leaf.leaf_hash,
                    leaf.chain_hash,
                    document,
                    None if entry is None else entry_document(entry),
                )
            )
        yield Batch(rows, None)
        after = leaves[-1].seq + 1


# One range of positions: each leaf with its entry (``rows.ENTRY_COLUMNS``), NULLs when it is missing.
_ROWS = (
    f"SELECT l.seq, l.entry_id, l.leaf_hash, l.chain_hash, l.document, {ENTRY_COLUMNS} "  # noqa: S608 - constant
    "FROM audit_leaves l LEFT JOIN audit_entries e ON e.id = l.entry_id "
    "WHERE l.seq >= %s AND l.seq < %s ORDER BY l.seq"
)

# The stored nodes of the given per-level index ranges.
_NODES = """
SELECT n.level, n.idx, n.hash
FROM unnest(%s::smallint[], %s::bigint[], %s::bigint[]) AS r(level, lo, hi)
JOIN audit_nodes n ON n.level = r.level AND n.idx BETWEEN r.lo AND r.hi
"""


def completed_ranges(first: int, last: int) -> list[tuple[int, int, int]]:
    """``(level, lo, hi)``: the interior nodes (level >= 1) completed by appending leaves first..last.

    Node ``(L, i)`` completes with leaf ``((i + 1) << L) - 1``."""
    out = []
    level = 1
    while (1 << level) <= last + 1:
        lo = -(-(first + 1) // (1 << level)) - 1
        hi = ((last + 1) >> level) - 1
        if lo <= hi:
            out.append((level, lo, hi))
        level += 1
    return out


def _read(cursor: Any, start: int, end: int) -> Batch:
    """Leaves ``[start, end)`` with their entries, and the stored nodes that range completes."""
    rows: list[Row] = [
        (seq, entry_id, leaf, link, document, None if columns[0] is None else entry_from_columns(columns))
        for seq, entry_id, leaf, link, document, *columns in cursor.execute(
            _ROWS, (start, end), binary=True
        ).fetchall()
    ]
    nodes: dict[Node, bytes] = {}
    if rows:
        ranges = completed_ranges(start, rows[-1][0])
        if ranges:
            levels, los, his = (list(column) for column in zip(*ranges, strict=True))
            nodes = {
                (level, idx): value
                for level, idx, value in cursor.execute(_NODES, (levels, los, his), binary=True).fetchall()
            }
    return Batch(rows, nodes)


def postgres_batches(session: Session, batch: int, *, readers: int = 2) -> Iterator[Batch]:
    """PostgreSQL, through psycopg in binary: ranges of ``batch`` positions (rounded up to a power of two).

    When it can (see the module docstring), ``readers`` connections on this transaction's snapshot read
    the ranges ahead in threads, taking turns: while one waits for PostgreSQL to produce its range,
    another turns its rows into Python objects and this thread checks the previous range. (One reader
    alone left PostgreSQL idle while it parsed, and itself idle while PostgreSQL worked.)"""
    size = 1 << max(0, batch - 1).bit_length()
    connection = session.connection()
    own = psycopg_connection(session)
    (last,) = own.execute("SELECT coalesce(max(seq), -1) FROM audit_leaves").fetchone() or (-1,)
    starts = list(range(0, int(last) + 1, size))
    (wrote,) = own.execute("SELECT txid_current_if_assigned()").fetchone() or (None,)
    # Our own writes are invisible to any other connection, and a savepoint cannot export its snapshot:
    # then read here, on our own connection.
    if wrote is not None or connection.in_nested_transaction() or len(starts) < 2:
        cursor = own.cursor()
        for start in starts:
            yield _read(cursor, start, start + size)
        return
    (snapshot,) = own.execute("SELECT pg_export_snapshot()").fetchone() or ("",)
    turns = [_Reader(own, snapshot, starts[i::readers], size) for i in range(min(readers, len(starts)))]
    try:
        for index in range(len(starts)):
            yield turns[index % len(turns)].next()
    finally:
        for reader in turns:
            reader.close()


class _Reader:
    """One read-ahead connection on an exported snapshot, reading its share of the ranges in a thread."""

    def __init__(self, own: Any, snapshot: str, starts: list[int], size: int) -> None:
        import psycopg

        self._connection = psycopg.connect(own.info.dsn, password=own.info.password, autocommit=True)
        self._ahead: queue.Queue[Batch | BaseException] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(snapshot, starts, size), name="spoc-audit-verify-reader", daemon=True
        )
        self._thread.start()

    def _run(self, snapshot: str, starts: list[int], size: int) -> None:
        from psycopg import sql

        try:
            self._connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self._connection.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            cursor = self._connection.cursor()
            for start in starts:
                if self._stop.is_set():
                    return
                self._ahead.put(_read(cursor, start, start + size))
        except BaseException as exc:  # handed to the verifying thread, which raises it
            self._ahead.put(exc)

    def next(self) -> Batch:
        item = self._ahead.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a reader waiting to put
            try:
                self._ahead.get(timeout=0.1)
            except queue.Empty:
                continue
        self._thread.join()
        self._connection.close()
