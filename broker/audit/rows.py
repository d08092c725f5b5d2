"""The audit log's bulk rows on PostgreSQL, through psycopg directly (the sequencer's and verifier's hot paths).

Measured on the benchmark machine, per row, against what these replace:

* entries are read with their time rendered by PostgreSQL (``to_char``, RFC 3339 UTC with microseconds,
  exactly ``entry_document``'s form) and their two ``jsonb`` columns as text parsed by orjson: psycopg's
  ``jsonb`` loader (a Python call per value) and ``datetime.strftime`` cost more than hashing the entry;
* leaves and nodes are written with ``COPY ... (FORMAT BINARY)``: about 1 µs of Python and 3 µs of
  PostgreSQL per leaf, against 2.5 and 8 for one ``INSERT ... SELECT FROM unnest`` of comma-joined texts.

Everything runs on the session's own connection, in its transaction: these are plain reads and inserts,
so the log lock, the append-only triggers (which refuse UPDATE and DELETE, not inserts or COPY) and the
unit of work are the same as through SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy.orm import Session

__all__ = [
    "AT_TEXT",
    "ENTRY_COLUMNS",
    "copy_rows",
    "entry_from_columns",
    "no_cyclic_gc",
    "pending_entries",
    "pending_entries_after",
    "psycopg_connection",
    "uses_psycopg",
]

AT_TEXT = "to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
"""An ``audit_entries e`` row's time as ``entry_document`` writes it (RFC 3339 UTC, microseconds)."""

ENTRY_COLUMNS = (
    f"e.id, {AT_TEXT}, e.actor, e.role, e.action, "
    "e.object_type, e.object_id, e.countries::text, e.outcome, e.request_id, e.details::text"
)
"""An ``audit_entries e`` row as :func:`entry_from_columns` takes it (11 columns)."""


def entry_from_columns(columns: Sequence[Any]) -> dict[str, Any]:
    """``entry_document`` of an entry read with :data:`ENTRY_COLUMNS`."""
    eid, at, actor, role, action, object_type, object_id, countries, outcome, request_id, details = columns
    return {
        "id": eid,
        "at": at,
        "actor": actor,
        "role": role,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "countries": orjson.loads(countries),
        "outcome": outcome,
        "request_id": request_id,
        "details": orjson.loads(details),
    }


def uses_psycopg(session: Session) -> bool:
    """Whether the session's database is PostgreSQL through psycopg 3 (what these paths need)."""
    bind = session.get_bind()
    return bind.dialect.name == "postgresql" and bind.dialect.driver == "psycopg"


def psycopg_connection(session: Session) -> Any:
    """The psycopg connection under the session's current transaction."""
    import psycopg

    raw = session.connection().connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError("the audit log's PostgreSQL paths need a psycopg (3) connection")
    return raw


_PENDING = (
    f"SELECT {ENTRY_COLUMNS} FROM audit_pending p JOIN audit_entries e ON e.id = p.entry_id "  # noqa: S608 - constant
    "WHERE p.entry_id > %s ORDER BY p.entry_id LIMIT %s"
)


def pending_entries(session: Session, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` queued entries, in id order, as the documents the log hashes."""
    return pending_entries_after(psycopg_connection(session), 0, limit)


def pending_entries_after(connection: Any, after: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` queued entries with ids above ``after``, in id order, on a psycopg ``connection``."""
    found = connection.execute(_PENDING, (after, limit), binary=True).fetchall()
    return [entry_from_columns(row) for row in found]


#: PostgreSQL type names for COPY's binary format, by SQLAlchemy column type.
_PG_TYPES = {
    "BigInteger": "int8",
    "Integer": "int4",
    "SmallInteger": "int2",
    "String": "varchar",
    "LargeBinary": "bytea",
}


def copy_rows(session: Session, table: Any, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """``COPY table (columns) FROM STDIN (FORMAT BINARY)`` of ``rows`` (tuples in ``columns`` order).

    ``rows`` may be a generator: psycopg sends the data as it is written, so PostgreSQL inserts the
    first rows while the later ones are still being computed."""
    types = [_PG_TYPES[type(table.c[name].type).__name__] for name in columns]
    # Table and column names come from our own metadata, never from input.
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    with psycopg_connection(session).cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


@contextlib.contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a bulk pass over the log.

    The sequencer and the verifier allocate a few small containers per entry and free them all (no
    cycles), yet each burst of allocations made the collector traverse every live row of the batch: it
    cost more than the hashing (reading a batch for verification took 2.5 times as long with it on)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
