"""Reading the stored log for full verification, in position order, a batch at a time.

Each row a generic batch (:class:`Batch`) holds is ``(seq, entry_id, leaf_hash, chain_hash, document,
entry)``: the leaf's own columns (``document`` the canonical bytes the sequencer hashed, None for leaves
appended before it kept them) and ``entry``, the document rebuilt from the entry's columns exactly as the
sequencer builds it (``entry_document``), or None when the entry is missing. Comparing the two, and
hashing, is the verifier's job (``broker.audit.verify``); a source only reads.

Two sources:

* :class:`PostgresScan` reads with psycopg directly, in binary, a range of positions at a time: the
  leaves by position, then their entries as one span of ids, each with its flat fields already written
  as canonical JSON text by PostgreSQL (see ``_HEAD``), and the tree nodes the range completes. That is a
  :class:`Range`, which the verifier checks column-wise. A range whose entries are not exactly that span
  in that order (an entry missing, appended out of id order) or hold a character JSON escapes is read
  again as one join of leaves and entries (``_GENERIC``) into a :class:`Batch`. When the verifying
  transaction has written nothing, two more connections read the ranges ahead in threads on the same
  snapshot (``pg_export_snapshot``), so PostgreSQL producing the next ranges overlaps Python checking this
  one; a transaction with writes of its own (which another connection cannot see), or inside a savepoint
  (which cannot export its snapshot), reads on its own connection.
* :func:`generic_batches` reads through SQLAlchemy on any database (SQLite, the embedded default).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from broker.audit.document import entry_document
from broker.audit.merkle import Node
from broker.audit.models import AuditEntry, AuditLeaf, AuditNode
from broker.audit.rows import AT_TEXT, ENTRY_COLUMNS, entry_from_columns, psycopg_connection
from broker.audit.tree import among

__all__ = [
    "ACCOUNTED",
    "DETAILS_KEY",
    "Batch",
    "Nodes",
    "PostgresScan",
    "Range",
    "Row",
    "completed_ranges",
    "generic_batches",
    "spans",
    "stored_nodes",
]

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


def generic_batches(session: Session, batch: int) -> Generator[Batch]:
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


# An entry's canonical bytes but for its two nested values, written by PostgreSQL from its flat fields
# by plain concatenation, keys in sorted order, no spaces: ``head`` up to the countries, ``tail`` from the
# id on. That is the JSON encoding of each field only when no field holds a character JSON escapes (a
# quote, a backslash, a control character): ``clean`` says so, and a range with any entry that is not
# clean is read again in the generic form (``_GENERIC``). (``to_json`` per field cost three times as much
# PostgreSQL time as the whole concatenation.)
_HEAD = (
    """'{"action":"' || e.action || '","actor":"' || e.actor || '","at":'"""
    f""" || coalesce('"' || {AT_TEXT} || '"', 'null') || ',"countries":'"""
)
_TAIL = (
    """',"id":' || e.id || ',"object_id":' || coalesce('"' || e.object_id || '"', 'null')"""
    """ || ',"object_type":"' || e.object_type || '","outcome":"' || e.outcome || '","request_id":'"""
    """ || coalesce('"' || e.request_id || '"', 'null') || ',"role":"' || e.role || '"}'"""
)
_CLEAN = (
    "(e.action || e.actor || e.role || e.object_type || coalesce(e.object_id, '') || e.outcome "
    """|| coalesce(e.request_id, '')) !~ '[\\x01-\\x1f"\\\\]'"""
)
DETAILS_KEY = b',"details":'
"""What stands between an entry's countries and its details in its canonical bytes."""

# One range of positions: the leaves, in order.
_LEAVES = (
    "SELECT seq, entry_id, leaf_hash, chain_hash, document FROM audit_leaves "
    "WHERE seq >= %s AND seq < %s ORDER BY seq"
)

# Their entries when their ids are one short span, in id order: reading the span costs PostgreSQL a fifth
# less than looking up each leaf's entry (the join below).
_ENTRIES = (
    f"SELECT e.id, {_HEAD}, e.countries::text, e.details::text, {_TAIL}, {_CLEAN} "  # noqa: S608 - constant
    "FROM audit_entries e WHERE e.id >= %s AND e.id <= %s ORDER BY e.id"
)

# The same range in the generic form: each leaf with its entry (``rows.ENTRY_COLUMNS``), NULLs when it
# is missing.
_GENERIC = (
    f"SELECT l.seq, l.entry_id, l.leaf_hash, l.chain_hash, l.document, {ENTRY_COLUMNS} "  # noqa: S608 - constant
    "FROM audit_leaves l LEFT JOIN audit_entries e ON e.id = l.entry_id "
    "WHERE l.seq >= %s AND l.seq < %s ORDER BY l.seq"
)

# The stored nodes of the given per-level index ranges (in practice by level, then index: see ``Range``).
_NODES = """
SELECT n.level, n.idx, n.hash
FROM unnest(%s::smallint[], %s::bigint[], %s::bigint[]) AS r(level, lo, hi)
JOIN audit_nodes n ON n.level = r.level AND n.idx BETWEEN r.lo AND r.hi
"""

# What accounts for every entry: how many entries there are, and how many queued ones have no leaf (each
# counted once, only if it exists). ``broker.audit.verify`` adds the leaves it verified to the second.
ACCOUNTED = """
SELECT (SELECT count(*) FROM audit_entries),
(SELECT count(DISTINCT p.entry_id) FROM audit_pending p
 WHERE EXISTS (SELECT 1 FROM audit_entries e WHERE e.id = p.entry_id)
 AND NOT EXISTS (SELECT 1 FROM audit_leaves l WHERE l.entry_id = p.entry_id))
"""

_SETTINGS = "SELECT current_setting(name) FROM unnest(%s::text[]) WITH ORDINALITY AS s(name, i) ORDER BY i"

# The plan each range is read with, whatever the statistics say (a freshly written log has none): leaves
# and entries by their primary keys in order (the generic join: each entry by its own); no bitmap scan
# and sort (twice the PostgreSQL time), no hash or merge join over the whole entries table, no parallel
# workers, no JIT. And text in UTF-8, what the canonical bytes are made of; backslashes in literals as
# written (``_CLEAN``'s pattern).
_PLAN = {
    "enable_bitmapscan": "off",
    "enable_hashjoin": "off",
    "enable_mergejoin": "off",
    "max_parallel_workers_per_gather": "0",
    "jit": "off",
    "client_encoding": "UTF8",
    "standard_conforming_strings": "on",
}


class Nodes(NamedTuple):
    """Stored nodes, column by column: ``(levels[i], indexes[i])`` is the name of ``hashes[i]``."""

    levels: tuple[int, ...] = ()
    indexes: tuple[int, ...] = ()
    hashes: tuple[bytes, ...] = ()


_NO_NODES = Nodes()


@dataclass
class Range:
    """One range of positions as PostgreSQL reads it for the verifier's fast check, column by column.

    The leaves' ``seqs``, ``entry_ids``, ``leaf_hashes``, ``links`` (chain hashes) and ``documents``, in
    position order; their entries' ``heads``, ``countries``, ``details`` and ``tails`` in the same order
    (``_read`` checked the ids), every entry clean, all as UTF-8 bytes: ``head``, the canonical
    ``countries``, ``DETAILS_KEY``, the canonical ``details`` and ``tail`` make the entry's canonical bytes
    (see ``_HEAD``). ``nodes`` are the stored nodes the range completes, in the order of
    ``completed_ranges`` as PostgreSQL returns them in practice (the fast check compares them in that
    order: any other fails it, and the generic check decides)."""

    seqs: tuple[int, ...] = ()
    entry_ids: tuple[int, ...] = ()
    leaf_hashes: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    documents: tuple[bytes | None, ...] = ()
    heads: tuple[bytes, ...] = ()
    countries: tuple[bytes, ...] = ()
    details: tuple[bytes, ...] = ()
    tails: tuple[bytes, ...] = ()
    nodes: Nodes = _NO_NODES

    def rows(self) -> list[Row]:
        """The rows in the generic form: the entry as the JSON value its columns make (``entry_document``)."""
        return [
            (
                seq,
                entry_id,
                leaf,
                link,
                document,
                orjson.loads(b"".join((head, listed, DETAILS_KEY, more, tail))),
            )
            for seq, entry_id, leaf, link, document, head, listed, more, tail in zip(
                self.seqs,
                self.entry_ids,
                self.leaf_hashes,
                self.links,
                self.documents,
                self.heads,
                self.countries,
                self.details,
                self.tails,
                strict=True,
            )
        ]

    def stored_nodes(self) -> dict[Node, bytes]:
        """The stored nodes by name."""
        return {(level, index): value for level, index, value in zip(*self.nodes, strict=True)}


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


def _cursor(connection: Any) -> Any:
    """A cursor that reads ``text`` as bytes (what orjson and the canonical bytes are made of)."""
    from psycopg.types.string import ByteaBinaryLoader

    cursor = connection.cursor()
    cursor.adapters.register_loader("text", ByteaBinaryLoader)
    return cursor


def _read(cursor: Any, start: int, end: int) -> Range | Batch:
    """Leaves ``[start, end)`` with their entries, and the stored nodes that range completes: a ``Range``,
    or a ``Batch`` in the generic form when the entries are not exactly the span of ids they cover (one
    missing, or appended out of id order) or one is not clean."""
    leaves = cursor.execute(_LEAVES, (start, end), binary=True).fetchall()
    if not leaves:
        return Range()
    nodes = Nodes()
    ranges = completed_ranges(start, leaves[-1][0])
    if ranges:
        levels, los, his = (list(column) for column in zip(*ranges, strict=True))
        found = cursor.execute(_NODES, (levels, los, his), binary=True).fetchall()
        nodes = Nodes(*zip(*found, strict=True)) if found else Nodes()
    seqs, entry_ids, leaf_hashes, links, documents = zip(*leaves, strict=True)
    low, high, n = min(entry_ids), max(entry_ids), len(leaves)
    if high - low < 2 * n:  # else the span is mostly other entries: the generic read
        entries = cursor.execute(_ENTRIES, (low, high), binary=True).fetchall()
        if len(entries) == n:
            ids, heads, countries, details, tails, clean = zip(*entries, strict=True)
            # The same ids in the same order, each once (entries come in id order): strictly increasing.
            if ids == entry_ids and len(set(ids)) == n and clean.count(True) == n:
                return Range(
                    seqs, entry_ids, leaf_hashes, links, documents, heads, countries, details, tails, nodes
                )
    rows: list[Row] = [
        (seq, entry_id, leaf, link, document, None if cols[0] is None else entry_from_columns(cols))
        for seq, entry_id, leaf, link, document, *cols in cursor.connection.cursor()
        .execute(_GENERIC, (start, end), binary=True)
        .fetchall()
    ]
    return Batch(rows, {(level, index): value for level, index, value in zip(*nodes, strict=True)})


class PostgresScan:
    """PostgreSQL, through psycopg in binary: ranges of up to ``batch`` positions, the first ones smaller.

    When it can (see the module docstring), ``readers`` connections on this transaction's snapshot read
    the ranges ahead in threads, taking turns: while one waits for PostgreSQL to produce its range,
    another turns its rows into Python objects and this thread checks the previous range. (One reader
    alone left PostgreSQL idle while it parsed, and itself idle while PostgreSQL worked.) The first range
    is read here while they connect, and it is small, as are the next few (:func:`spans`): the checking
    starts sooner. One more connection on the snapshot counts what accounts for the entries
    (:data:`ACCOUNTED`) meanwhile: :meth:`accounted`."""

    def __init__(self, session: Session, batch: int, *, readers: int = 2) -> None:
        self._session = session
        self._batch = max(1, batch)
        self._readers = readers
        self._accounted: _Snapshot | None = None

    def batches(self) -> Generator[Range | Batch]:
        """The ranges in position order (the generator's ``close`` stops the readers)."""
        session = self._session
        connection = session.connection()
        own = psycopg_connection(session)
        (last,) = own.execute("SELECT coalesce(max(seq), -1) FROM audit_leaves").fetchone() or (-1,)
        bounds = spans(int(last) + 1, self._batch)
        (wrote,) = own.execute("SELECT txid_current_if_assigned()").fetchone() or (None,)
        # Our own writes are invisible to any other connection, and a savepoint cannot export its snapshot:
        # then read here, on our own connection. The plan is set for this transaction and put back after.
        alone = wrote is not None or connection.in_nested_transaction() or len(bounds) < 2
        snapshot = None if alone else (own.execute("SELECT pg_export_snapshot()").fetchone() or ("",))[0]
        turns: list[_Snapshot] = []
        if snapshot is not None:
            later = bounds[1:]
            count = min(self._readers, len(later))
            turns = [_Snapshot(own, snapshot, _ranges(later[i::count]), ahead=1) for i in range(count)]
            self._accounted = _Snapshot(own, snapshot, _accounted)
        names = list(_PLAN)
        before = [value for (value,) in own.execute(_SETTINGS, (names,)).fetchall()]
        try:
            _set_plan(own)
            try:
                cursor = _cursor(own)
                for start, end in bounds if alone else bounds[:1]:
                    yield _read(cursor, start, end)
            finally:
                for name, value in zip(names, before, strict=True):
                    own.execute("SELECT set_config(%s, %s, true)", (name, value))
            for index in range(len(bounds) - 1 if turns else 0):
                found = turns[index % len(turns)].next()
                assert isinstance(found, Range | Batch)  # noqa: S101 - a reader yields nothing else
                yield found
        finally:
            for reader in turns:
                reader.close()

    def close(self) -> None:
        """Stop the counting connection if :meth:`accounted` was not asked (a failure ended the pass)."""
        if self._accounted is not None:
            self._accounted.close()
            self._accounted = None

    def accounted(self) -> tuple[int, int] | None:
        """``(entries, queued)`` as :data:`ACCOUNTED` counts them on the scan's snapshot; None if this scan
        did not count (it read on the session's own connection)."""
        if self._accounted is None:
            return None
        try:
            found = self._accounted.next()
        finally:
            self.close()
        assert isinstance(found, tuple)  # noqa: S101 - the query's one row
        return int(found[0]), int(found[1])


def _set_plan(connection: Any, plan: dict[str, str] = _PLAN) -> None:
    for name, value in plan.items():
        connection.execute("SELECT set_config(%s, %s, true)", (name, value))


def spans(size: int, batch: int, *, first: int = 1024) -> list[tuple[int, int]]:
    """``[start, end)`` ranges covering positions ``0..size - 1``: ``first`` long (at most ``batch``), each
    next one twice as long up to ``batch``."""
    out = []
    start, step = 0, min(first, batch)
    while start < size:
        out.append((start, start + step))
        start, step = start + step, min(2 * step, batch)
    return out


def _ranges(bounds: list[tuple[int, int]]) -> Callable[[Any, Callable[[object], None]], None]:
    def read(connection: Any, put: Callable[[object], None]) -> None:
        cursor = _cursor(connection)
        for start, end in bounds:
            put(_read(cursor, start, end))

    return read


def _accounted(connection: Any, put: Callable[[object], None]) -> None:
    put(connection.execute(ACCOUNTED).fetchone())


class _Snapshot:
    """A connection on an exported snapshot running ``work`` in a thread; what it ``put``s, :meth:`next` takes.

    ``ahead`` bounds how far it runs ahead of the taker (memory: a range or two per reader)."""

    def __init__(
        self,
        own: Any,
        snapshot: str,
        work: Callable[[Any, Callable[[object], None]], None],
        *,
        ahead: int = 1,
    ) -> None:
        self._ahead: queue.Queue[object] = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._connection: Any = None
        self._thread = threading.Thread(
            target=self._run,
            args=(own.info.dsn, own.info.password, snapshot, work),
            name="spoc-audit-verify-reader",
            daemon=True,
        )
        self._thread.start()

    def _run(
        self,
        dsn: str,
        password: str | None,
        snapshot: str,
        work: Callable[[Any, Callable[[object], None]], None],
    ) -> None:
        import psycopg
        from psycopg import sql

        try:
            self._connection = psycopg.connect(dsn, password=password, autocommit=True)
            self._connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self._connection.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            _set_plan(self._connection)

            def put(item: object) -> None:
                if self._stop.is_set():
                    raise _Stopped
                self._ahead.put(item)

            work(self._connection, put)
        except _Stopped:
            return
        except BaseException as exc:  # handed to the verifying thread, which raises it
            self._ahead.put(_Failed(exc))

    def next(self) -> object:
        item = self._ahead.get()
        if isinstance(item, _Failed):
            raise item.exc
        return item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a reader waiting to put
            try:
                self._ahead.get(timeout=0.1)
            except queue.Empty:
                continue
        self._thread.join()
        if self._connection is not None:
            self._connection.close()


class _Stopped(Exception):
    """The taker closed the reader before it finished."""


@dataclass
class _Failed:
    exc: BaseException
