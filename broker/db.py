"""Database engine and session factory; the declarative base of every model.

The engine is built by ``make_engine(settings)`` in the app factory or the worker's start-up, never at
import. Services receive a ``Session`` and only ``flush()``; the edge (request dependency, worker base
task, CLI command) owns the transaction through ``unit_of_work``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import psycopg
from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    Engine,
    MetaData,
    Select,
    Table,
    create_engine,
    event,
    insert,
    inspect,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import DeclarativeBase, Session, make_transient_to_detached, sessionmaker
from sqlalchemy.orm.attributes import manager_of_class, set_committed_value
from sqlalchemy.types import TypeDecorator

from broker.config import Settings
from broker.files import private_sqlite

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both PostgreSQL and SQLite (which drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    return datetime.now(UTC)


_Row = TypeVar("_Row", bound=Base)


def new_row(cls: type[_Row], **values: Any) -> _Row:
    """A new, unwritten ``cls`` with ``values``, built without the declarative constructor's per-attribute
    events (a tenth of its cost, which on the set-based paths exceeded the row's own write).

    For rows that are only inserted (by :func:`insert_all`, or added to a session, whose unit of work inserts
    a new object's values as they are): the values are the object's state as if set one by one; nothing
    about them is tracked until the row is written, so set them all here."""
    if not values.keys() <= _column_keys(cls):
        raise TypeError(f"{cls.__name__} has no column {sorted(values.keys() - _column_keys(cls))[0]!r}")
    obj: _Row = manager_of_class(cls).new_instance()
    obj.__dict__.update(values)
    return obj


@functools.cache
def _column_keys(cls: type[Base]) -> frozenset[str]:
    return frozenset(prop.key for prop in inspect(cls).column_attrs)


def make_engine(settings: Settings) -> Engine:
    if settings.is_sqlite:
        private_sqlite(settings.data_dir, settings.database_url)  # 0700 folder, 0600 file, before SQLite
        engine = create_engine(
            settings.database_url,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=_json_text,
            json_deserializer=orjson.loads,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the API read while the worker writes; foreign keys are off by default in SQLite.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            # Freed space is overwritten with zeros (Debian builds SQLite so; upstream's default is off): the
            # retention rules delete content irrevocably (broker.retention.deletion), and every update of a
            # message row frees the space of its previous copy, envelope included.
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin_immediate(conn: Any) -> None:
            # Take the write lock at BEGIN so two writers never deadlock upgrading a read lock.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        # pysqlite's own implicit BEGIN must be off for the "begin" listener to be the only one.
        @event.listens_for(engine, "connect", insert=True)
        def _no_implicit_begin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        return engine
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        json_serializer=_json_bytes,
        json_deserializer=orjson.loads,
    )
    _ping_when_idle(engine)
    return engine


#: A pooled connection unused for longer than this is pinged before it is handed out (``_ping_when_idle``).
PING_AFTER_IDLE_SECONDS = 2.0
_CHECKED_IN = "spoc.checked_in"


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before handing it out, but only if it sat unused for a while.

    ``pool_pre_ping`` pings on every checkout: a round trip per transaction, which on a busy API was an
    eighth of a request's time spent in the database driver. A connection broken by a restart of PostgreSQL
    or a failover is one that waited in the pool meanwhile, so a ping after ``PING_AFTER_IDLE_SECONDS`` of
    rest keeps what pre-ping gave (no request fails on a connection that died while idle) at no cost under
    load. A connection that breaks in the seconds between two uses fails its statement instead (a 503 the
    client retries; a task retries), and SQLAlchemy then invalidates every connection of the pool older than
    the failure, so the rest are replaced without a failure of their own."""

    @event.listens_for(engine, "checkin")
    def _rested(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return  # new (just connected) or recently used
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and every one older (as pre-ping did), and hands out a new one.
            raise InvalidatePoolError("a pooled connection failed its ping") from exc
        if not alive:
            raise InvalidatePoolError("a pooled connection failed its ping")


# JSON columns (envelopes, audit details) are encoded and decoded by orjson rather than the standard
# library: the same JSON, several times faster, on every stored envelope and every audit entry read back.
# Non-string keys are written as strings, as ``json.dumps`` does.
def _json_bytes(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _json_text(value: Any) -> str:
    return _json_bytes(value).decode()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception. Only edges call this."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


#: From how many rows ``insert_all`` uses COPY on PostgreSQL: COPY takes two round trips (the command, then
#: the data), an INSERT one, so a few rows go faster as an INSERT.
COPY_FROM_ROWS = 8


def insert_all(session: Session, objects: Sequence[Base], *, keep: bool = False) -> None:
    """Write new ``objects`` of one mapped class as one set-based INSERT (the driver's pipelined
    executemany), not through the unit of work, whose bookkeeping per object costs more than the row.

    Every column is written: the object's value, else the column's Python default (each row has the same
    keys). An integer primary key left unset is generated by the database and the object does not learn
    it. With ``keep`` the objects become persistent in ``session`` exactly as written (clean: no second
    write; a later change is an ordinary UPDATE, version-checked where the model has a version column);
    their primary keys must then be set. The session's pending changes are not flushed here, so anything
    these rows refer to must be written already. Constraint violations raise as from a flush.
    """
    if not objects:
        return
    mapper = inspect(type(objects[0]))
    table = mapper.local_table
    if not isinstance(table, Table):
        raise TypeError(f"{mapper.class_.__name__} is not mapped to one table")
    attributes = [(prop.key, prop.columns[0]) for prop in mapper.column_attrs]
    rows = []
    for obj in objects:
        if type(obj) is not mapper.class_:
            raise TypeError(f"insert_all writes one class at a time, not {type(obj).__name__}")
        values = obj.__dict__
        row: dict[str, Any] = {}
        for key, column in attributes:
            if key in values:
                row[column.key] = values[key]
            elif column.primary_key and column.autoincrement in (True, "auto") and not keep:
                continue  # the database's to generate
            elif column.default is not None and column.default.is_scalar:
                row[column.key] = column.default.arg  # a scalar default
            elif column.default is not None and column.default.is_callable:
                row[column.key] = column.default.arg(None)  # wrapped to take a context
            else:
                row[column.key] = None
        rows.append(row)
    with session.no_autoflush:  # pending objects may refer to these rows: they are flushed after them
        connection = session.connection()
        if connection.dialect.name != "postgresql":
            connection.execute(insert(table), rows[0] if len(rows) == 1 else rows)
        elif len(rows) >= COPY_FROM_ROWS:
            _copy(connection, table, rows)
        else:
            _insert_values(connection, table, rows)
    if keep:
        for obj, row in zip(objects, rows, strict=True):
            values = obj.__dict__
            for key, column in attributes:
                if key not in values:
                    set_committed_value(obj, key, row[column.key])
            make_transient_to_detached(obj)
            session.add(obj)


@functools.lru_cache(maxsize=256)
def _bind_processors(dialect: Any, table: Table, names: tuple[str, ...]) -> tuple[Any, ...]:
    """Each column type's bind processing (UTC check, JSON encoding), for values sent past the compiler."""
    return tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)


@functools.lru_cache(maxsize=256)
def _values_statement(quoted_table: str, quoted_columns: tuple[str, ...], count: int) -> str:
    """Our own mapped table's and columns' names, quoted by the dialect; every value is a parameter."""
    one = "(" + ", ".join(["%s"] * len(quoted_columns)) + ")"
    head = f"INSERT INTO {quoted_table} ({', '.join(quoted_columns)}) VALUES "  # noqa: S608 - names only
    return head + ", ".join([one] * count)


def _insert_values(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """A few rows on PostgreSQL: one ``INSERT … VALUES (…), (…)`` whose text is built once per table, columns
    and row count, run through ``exec_driver_sql`` (SQLAlchemy's events and error wrapping, not its
    compiler: compiling and processing a multi-row insert cost about twice the statement's round trip).
    Values get their column type's bind processing, as in a compiled INSERT; strings go as PostgreSQL's
    ``unknown`` type, which the column's type then reads, as it does a literal."""
    columns = [table.c[name] for name in rows[0]]
    processors = _bind_processors(connection.dialect, table, tuple(rows[0]))
    quote = connection.dialect.identifier_preparer.quote
    statement = _values_statement(quote(table.name), tuple(quote(c.name) for c in columns), len(rows))
    parameters = tuple(
        value if process is None or value is None else process(value)
        for row in rows
        for value, process in zip(row.values(), processors, strict=True)
    )
    connection.exec_driver_sql(statement, parameters)


def _copy(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """``COPY table FROM STDIN``: PostgreSQL's bulk load, one command for all rows (no statement per row for
    the server to plan and run, no query text for the driver to build and parse). Each value goes through its
    column type's bind processing, as in an INSERT (UTC check, JSON encoding)."""
    columns = [table.c[name] for name in rows[0]]
    processors = _bind_processors(connection.dialect, table, tuple(rows[0]))
    quote = connection.dialect.identifier_preparer.quote
    statement = f"COPY {quote(table.name)} ({', '.join(quote(c.name) for c in columns)}) FROM STDIN"
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)  # noqa: S101 - the only PostgreSQL driver configured
    values = [  # all processed before the COPY starts: a refused value then leaves the transaction usable
        [
            value if process is None or value is None else process(value)
            for value, process in zip(row.values(), processors, strict=True)
        ]
        for row in rows
    ]
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row_values in values:
            copy.write_row(row_values)


# --- stamps: "has this table changed?" for the per-process snapshots, one round trip for all of them -------

_STAMPS: dict[str, Select[*tuple[Any, ...]]] = {}
_HELD = "db_stamps"


def register_stamp(name: str, statement: Select[*tuple[Any, ...]]) -> None:
    """A one-row query whose value changes whenever the snapshot ``name`` must be reloaded (the key registry's
    and the directory's: counts and latest change times of their tables)."""
    _STAMPS[name] = statement
    _stamp_sql.cache_clear()


@functools.lru_cache(maxsize=4)
def _stamp_sql(dialect: Any) -> tuple[str, tuple[tuple[str, int], ...]]:
    subqueries = [statement.subquery(name) for name, statement in _STAMPS.items()]
    combined = select(*(column for subquery in subqueries for column in subquery.c))
    widths = tuple((name, len(subquery.c)) for name, subquery in zip(_STAMPS, subqueries, strict=True))
    return str(combined.compile(dialect=dialect)), widths


def read_stamp(session: Session, name: str) -> tuple[Any, ...]:
    """The stamp ``name`` as of now, read with every registered stamp in one statement on PostgreSQL.

    A request checks two snapshots a few microseconds apart (the signing key, then its agency): the second
    is served from that one statement, as long as it is still the same transaction; otherwise, and for a
    stamp asked twice, the database is read again. So a snapshot is never older than the transaction that
    asked for it, which is what a stamp of its own would give."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return tuple(session.execute(_STAMPS[name]).one())
    transaction = session.get_transaction()
    held = session.info.get(_HELD)
    if held is not None and held[0] is transaction and name in held[1]:
        stamp: tuple[Any, ...] = held[1].pop(name)
        return stamp
    statement, widths = _stamp_sql(connection.dialect)
    row = tuple(connection.exec_driver_sql(statement).one())
    stamps: dict[str, tuple[Any, ...]] = {}
    start = 0
    for each, width in widths:
        stamps[each] = row[start : start + width]
        start += width
    own = stamps.pop(name)
    session.info[_HELD] = (transaction, stamps)
    return own
