"""The stored Merkle tree: every complete subtree's hash, so roots and proofs cost O(log n) reads.

Level 0 is ``audit_leaves.leaf_hash`` (by ``seq``); levels >= 1 are ``audit_nodes`` rows, written by the
sequencer, under its lock, in the transaction that appends the leaves they cover (:func:`extend`). A
node is written once, when its last leaf arrives, and never changes: the table is append-only like the
log itself. Any root or proof of a tree of size <= the log's size is the fold of at most ~2·log2(n)
stored subtrees, fetched in two indexed queries (leaves, nodes), which keeps an inclusion proof at a
million leaves to a couple of milliseconds.

Nothing here is trusted by a verifier: proofs served from these rows are checked against roots signed in
checkpoints, and ``verify_log`` recomputes every stored node from the entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import BigInteger, ColumnElement, any_, cast, func, insert, select, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import QueryableAttribute, Session

from broker.audit import merkle
from broker.audit.merkle import Frontier, Node
from broker.audit.models import AuditLeaf, AuditNode
from broker.audit.rows import copy_rows, uses_psycopg

_LOG_LOCK = 0x5B0C_A0D1  # PostgreSQL advisory lock key of the one log writer (sequencer, checkpoints)


def lock_log(session: Session) -> None:
    """Become the log's one writer until this transaction ends.

    PostgreSQL: a transaction-scoped advisory lock, released by commit or rollback, so a crashed writer
    cannot hold it. SQLite: the engine begins every transaction ``IMMEDIATE``, which already serialises
    writers. The sequencer takes it to append; checkpoint issuance takes it so the size and root it signs
    are of one tree, not of a tree growing underneath it.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOG_LOCK})


class StoredTree:
    """Read access to the stored tree in ``session`` (roots, proofs, sizes)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def size(self) -> int:
        """How many leaves the log holds (positions are consecutive from 0)."""
        last = self._session.scalar(select(func.max(AuditLeaf.seq)))
        return 0 if last is None else int(last) + 1

    def nodes(self, keys: Iterable[Node]) -> dict[Node, bytes]:
        """The stored hashes of the given complete subtrees (absent ones are simply missing)."""
        wanted = list(keys)
        leaves = [index for level, index in wanted if level == 0]
        inner = [(level, index) for level, index in wanted if level > 0]
        found: dict[Node, bytes] = {}
        if leaves:
            leaf_rows = self._session.execute(
                select(AuditLeaf.seq, AuditLeaf.leaf_hash).where(AuditLeaf.seq.in_(leaves))
            ).all()
            found.update({(0, int(seq)): bytes.fromhex(value) for seq, value in leaf_rows})
        if inner:
            rows = self._session.execute(
                select(AuditNode.level, AuditNode.idx, AuditNode.hash).where(
                    tuple_(AuditNode.level, AuditNode.idx).in_(inner)
                )
            ).all()
            found.update({(int(level), int(idx)): bytes(value) for level, idx, value in rows})
        return found

    def _hashes(self, ranges: Sequence[tuple[int, int]], size: int) -> list[bytes]:
        """The hashes of node ranges of the tree of ``size``, in one round of reads.

        Every range set passed here covers the whole tree (so leaf ``size - 1``), so a tree larger than the
        log always misses a node; only then is the size read, to say which of the two things is wrong.
        """
        try:
            return merkle.range_hashes(ranges, self.nodes)
        except merkle.ProofError:
            current = self.size()
            if size > current:
                raise merkle.ProofError(f"the log holds {current} entries, not {size}") from None
            raise

    def root(self, size: int) -> bytes:
        """RFC 9162 ``MTH(D[0:size])`` from the stored subtrees."""
        if size == 0:
            return merkle.EMPTY_ROOT
        (value,) = self._hashes([(0, size)], size)
        return value

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof (audit path) of leaf ``index`` in the tree of ``size``."""
        try:
            ranges = merkle.inclusion_ranges(index, size)
        except ValueError as exc:
            raise merkle.ProofError(str(exc)) from None
        # The leaf itself is read too (one more key in the same query): with it the ranges cover the
        # whole tree, so a size beyond the log cannot yield a proof.
        return self._hashes([(index, index + 1), *ranges], size)[1:]

    def inclusion_proofs(self, indices: Sequence[int], size: int) -> dict[int, tuple[bytes, list[bytes]]]:
        """Leaf hash and inclusion proof of many leaves at once: one fetch for all their nodes (exports)."""
        plans: list[tuple[int, int]] = []
        ranges: list[tuple[int, int]] = []
        for index in indices:
            try:
                path = merkle.inclusion_ranges(index, size)
            except ValueError as exc:
                raise merkle.ProofError(str(exc)) from None
            plans.append((index, len(path)))
            ranges.extend([(index, index + 1), *path])
        hashes = self._hashes(ranges, size) if ranges else []
        out: dict[int, tuple[bytes, list[bytes]]] = {}
        at = 0
        for index, length in plans:
            out[index] = (hashes[at], hashes[at + 1 : at + 1 + length])
            at += 1 + length
        return out

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """RFC 9162 consistency proof between the trees of sizes ``old`` and ``new``."""
        try:
            ranges = merkle.consistency_ranges(old, new)
        except ValueError as exc:
            raise merkle.ProofError(str(exc)) from None
        if not ranges:  # old is 0 or new: nothing to read, but the tree of ``new`` must exist
            self.root(new)
            return []
        return self._hashes(ranges, new)

    def frontier(self, size: int) -> Frontier:
        """The compact range at ``size``, ready to append the next leaves to."""
        keys = Frontier.nodes_of(size)
        found = self.nodes(keys)
        missing = [k for k in keys if k not in found]
        if missing:
            raise merkle.ProofError(f"the tree store lacks node {missing[0]} of the frontier at {size}")
        return Frontier(size, [found[k] for k in keys])


def extend(session: Session, start: int, leaves: Sequence[bytes]) -> bytes:
    """Store the interior nodes completed by appending ``leaves`` at positions ``start, start + 1, …``.

    Called by the sequencer, under its lock, after it has inserted the leaves themselves. Returns the new
    root (a by-product of the frontier, no extra reads).
    """
    frontier = StoredTree(session).frontier(start)
    rows: list[dict[str, object]] = []
    for leaf in leaves:
        for (level, index), value in frontier.append(leaf):
            rows.append({"level": level, "idx": index, "hash": value})
    insert_rows(session, AuditNode, rows)
    return frontier.root()


def insert_rows(
    session: Session, model: type[AuditLeaf] | type[AuditNode], rows: Sequence[Mapping[str, object]]
) -> None:
    """Insert the sequencer's rows (leaves, nodes), given as mappings of column to value."""
    if rows:
        columns = list(rows[0])
        insert_tuples(session, model, columns, [tuple(row[name] for name in columns) for row in rows])


def insert_tuples(
    session: Session,
    model: type[AuditLeaf] | type[AuditNode],
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
) -> None:
    """Insert the sequencer's rows (tuples in ``columns`` order) in as few round trips as the database allows.

    PostgreSQL through psycopg: one ``COPY ... FROM STDIN (FORMAT BINARY)`` (``broker.audit.rows``): no
    statement to parse and no text to split and cast, about a third of the CPU, on both sides, of the
    statement below. PostgreSQL through another driver: one ``INSERT … SELECT FROM unnest(arrays)``
    statement per call, a fixed statement with one parameter per column (prepared once, one round trip
    whatever the batch size), each column travelling as one comma-separated text that PostgreSQL splits
    and casts (integers, hex strings, bytea in ``\\x`` hex form): the driver's per-element array encoding
    in Python cost more than the hashing. Other databases (SQLite, in-process): a plain executemany.
    """
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql" and uses_psycopg(session):
        copy_rows(session, model.__table__, columns, rows)
        return
    mappings = [dict(zip(columns, row, strict=True)) for row in rows]
    if dialect != "postgresql":
        session.execute(insert(model), mappings)
        return
    table = model.__table__
    params: dict[str, object] = {}
    arrays = []
    for at, name in enumerate(columns):
        array_type = _PG_ARRAY[type(table.c[name].type).__name__]
        values = [row[at] for row in rows]
        joined = _joined(values)
        if joined is None:  # a value the text form cannot carry: send a real array
            params[name] = values
            arrays.append(f"CAST(:{name} AS {array_type})")
        else:
            params[name] = joined
            arrays.append(f"CAST(string_to_array(:{name}, ',') AS {array_type})")
    # Table and column names come from our own metadata, never from input.
    sql = (
        f"INSERT INTO {model.__tablename__} ({', '.join(columns)}) SELECT * FROM unnest({', '.join(arrays)})"  # noqa: S608
    )
    session.execute(text(sql), params)


def _joined(values: list[object]) -> str | None:
    """``values`` as one comma-separated text, or None when that would not split back into the same list."""
    blobs = [v for v in values if type(v) is bytes]
    if len(blobs) == len(values):
        return ",".join("\\x" + b.hex() for b in blobs)
    numbers = [v for v in values if type(v) is int]
    if len(numbers) == len(values):
        return ",".join(map(str, numbers))
    texts = [v for v in values if type(v) is str]
    if len(texts) == len(values):
        joined = ",".join(texts)
        # Every value non-empty and comma-free: then the text splits back into exactly these values.
        if "" in texts or joined.count(",") != len(texts) - 1:
            return None
        return joined
    return None


def among(
    column: QueryableAttribute[int] | ColumnElement[int], ids: Sequence[int], dialect: str
) -> ColumnElement[bool]:
    """``column IN ids``, as one array parameter on PostgreSQL (``= ANY``): rendering and sending thousands
    of separate parameters costs more than the query."""
    if dialect == "postgresql":
        return column == any_(cast(list(ids), ARRAY(BigInteger)))
    return column.in_(ids)


#: SQLAlchemy column type → PostgreSQL array type, for the columns the sequencer writes.
_PG_ARRAY = {
    "BigInteger": "bigint[]",
    "SmallInteger": "smallint[]",
    "String": "text[]",
    "LargeBinary": "bytea[]",
}
