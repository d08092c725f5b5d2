"""Writing, claiming and completing outbox rows.

``enqueue`` runs inside the change's transaction. The relay ``claim``s a batch (rows never handed over,
or handed over ``redispatch_after`` seconds ago and still not done: their task was lost, e.g. Redis was
flushed or a worker was killed), commits, then sends them to Celery. Tasks call ``process`` with the ids;
it skips rows already done (or being done by a concurrent run: ``SKIP LOCKED``), so a task that runs
twice does nothing the second time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from broker.db import utcnow
from broker.ops import logs
from broker.outbox.models import OutboxItem

log = logging.getLogger("spoc.outbox")

Handler = Callable[[Session, OutboxItem], None]
BatchHandler = Callable[[Session, Sequence[OutboxItem]], None]
Prefetch = Callable[[Session, Sequence[OutboxItem]], None]


def enqueue(
    session: Session, *, kind: str, message_id: str | None = None, payload: dict[str, Any] | None = None
) -> None:
    """Add a row; one written while a request is handled keeps its id, for the worker's log lines."""
    request_id = logs.REQUEST_ID.get()
    payload = {**(payload or {}), "request_id": request_id} if request_id is not None else payload or {}
    session.add(OutboxItem(kind=kind, message_id=message_id, payload=payload))


def claim(session: Session, *, limit: int, redispatch_after: float) -> list[int]:
    """Hand over up to ``limit`` rows due (never handed over, or ``redispatch_after`` seconds ago and not
    done), oldest first: their ids, in order. One statement: the rows are picked (PostgreSQL: ``FOR UPDATE
    SKIP LOCKED``, so two relays never claim the same row) and stamped by the same UPDATE."""
    now = utcnow()
    stale = now - timedelta(seconds=redispatch_after)
    due = (
        select(OutboxItem.id)
        .where(
            OutboxItem.done_at.is_(None),
            or_(OutboxItem.dispatched_at.is_(None), OutboxItem.dispatched_at < stale),
        )
        .order_by(OutboxItem.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    session.flush()  # rows enqueued in this unit of work are due too
    ids = sorted(
        session.execute(
            update(OutboxItem)
            .where(OutboxItem.id.in_(due))
            .values(dispatched_at=now, attempts=OutboxItem.attempts + 1)
            .returning(OutboxItem.id)
            .execution_options(synchronize_session=False)
        ).scalars()
    )
    _expire(session, ids, ["dispatched_at", "attempts"])
    return ids


def _expire(session: Session, ids: Sequence[int], attributes: list[str]) -> None:
    """Rows of ``ids`` this session already holds read the columns a set-based UPDATE wrote again."""
    for row_id in ids:
        held = session.identity_map.get(identity_key(OutboxItem, row_id))
        if held is not None:
            session.expire(held, attributes)


def _mark_done(session: Session, rows: Sequence[OutboxItem], finished: datetime) -> None:
    """Mark ``rows`` done at ``finished``: one UPDATE, the objects brought in line without a second write."""
    if not rows:
        return
    session.execute(
        update(OutboxItem)
        .where(OutboxItem.id.in_([row.id for row in rows]))
        .values(done_at=finished)
        .execution_options(synchronize_session=False)
    )
    for row in rows:
        set_committed_value(row, "done_at", finished)


def process(
    session: Session,
    ids: Sequence[int],
    handlers: dict[str, Handler],
    *,
    prefetch: Prefetch | None = None,
    batch_handlers: dict[str, BatchHandler] | None = None,
    redispatch_after: float | None = None,
) -> int:
    """Run the handler of each not-yet-done row and mark it done. Returns rows processed.

    With ``redispatch_after`` (the relay's), a row that fails is due again after ``retry_delay`` of its
    attempts, not after the whole redispatch delay: a passing fault (a lock, a peer restarting) costs
    seconds, and a row that keeps failing settles at the relay's pace.

    ``prefetch`` loads what the batch's handlers will need in a few queries (no query per row). A kind with a
    ``batch_handlers`` entry is done for all its rows at once (set-based statements) in one savepoint; if that
    fails, its rows are done one by one, each in its own savepoint, as a kind without one always is: one bad
    row never undoes the others, and its error is kept on the row.
    """
    query = (
        select(OutboxItem).where(OutboxItem.id.in_(ids), OutboxItem.done_at.is_(None)).order_by(OutboxItem.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = session.scalars(query).all()
    if prefetch is not None and rows:
        prefetch(session, rows)
    by_kind: dict[str, list[OutboxItem]] = {}
    for row in rows:
        by_kind.setdefault(row.kind, []).append(row)
    done = 0
    one_by_one: list[OutboxItem] = []
    for kind, group in by_kind.items():
        batch = (batch_handlers or {}).get(kind)
        if batch is None:
            one_by_one += group
            continue
        try:
            with session.begin_nested():
                batch(session, group)
        except Exception as exc:  # any failure: the rows are tried one by one, which keeps each one's error
            log.info("outbox: %d %s rows done one by one (%s)", len(group), kind, type(exc).__name__)
            # Set-based steps bring objects in line without the unit of work (no history to roll back), so
            # everything is read again: nothing unflushed is lost (the savepoint flushed on entering).
            session.expire_all()
            one_by_one += group
            continue
        _mark_done(session, group, utcnow())
        done += len(group)
    for row in sorted(one_by_one, key=lambda r: r.id):
        try:
            # One bad row must not undo the batch; the row's lines carry the request that made it.
            with session.begin_nested(), logs.bound(row.payload.get("request_id")):
                handlers[row.kind](session, row)
        except Exception as exc:
            row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            if redispatch_after is not None:
                wait = retry_delay(row.attempts, redispatch_after)
                row.dispatched_at = utcnow() - timedelta(seconds=redispatch_after - wait)
            log.warning(
                "outbox row %d (%s) of message %s failed: %s",
                row.id,
                row.kind,
                row.message_id,
                type(exc).__name__,
            )
            continue
        row.done_at = utcnow()
        done += 1
    session.flush()
    return done


def in_flight(session: Session, *, redispatch_after: float) -> int:
    """Rows handed over less than ``redispatch_after`` seconds ago and not yet done: the work queued for the
    workers (or being done). The relay stops claiming more once it is large."""
    stale = utcnow() - timedelta(seconds=redispatch_after)
    return (
        session.scalar(
            select(func.count())
            .select_from(OutboxItem)
            .where(OutboxItem.done_at.is_(None), OutboxItem.dispatched_at >= stale)
        )
        or 0
    )


def retry_delay(attempts: int, redispatch_after: float) -> float:
    """Seconds before a row that failed on its ``attempts``-th hand-over is due again: 1, 2, 4, … capped at
    ``redispatch_after``."""
    return float(min(2.0 ** max(attempts - 1, 0), redispatch_after))


def pending_count(session: Session) -> int:
    return (
        session.scalar(select(func.count()).select_from(OutboxItem).where(OutboxItem.done_at.is_(None))) or 0
    )


def purge_done(session: Session, *, older_than_seconds: float) -> int:
    """Delete rows finished more than ``older_than_seconds`` ago (the claim scan stays small)."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    result = session.execute(delete(OutboxItem).where(OutboxItem.done_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
