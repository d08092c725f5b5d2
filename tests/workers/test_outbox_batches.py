"""The outbox as the relay and the batch tasks use it (``broker.outbox.service``): rows claimed and marked done
by one statement each, with the same rules as row by row (rolled back after each test)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from broker.config import get_settings
from broker.db import unit_of_work, utcnow
from broker.outbox import service as outbox
from broker.outbox.models import OutboxItem

KIND = "test-outbox-batches"


def _enqueue(db: Session, n: int) -> list[OutboxItem]:
    for i in range(n):
        outbox.enqueue(db, kind=KIND, payload={"i": i})
    db.flush()
    return list(db.scalars(select(OutboxItem).where(OutboxItem.kind == KIND).order_by(OutboxItem.id)))


def _claim_mine(db: Session, rows: Sequence[OutboxItem], *, redispatch_after: float) -> list[int]:
    mine = {r.id for r in rows}
    return [i for i in outbox.claim(db, limit=100_000, redispatch_after=redispatch_after) if i in mine]


def test_a_claim_stamps_its_rows_in_one_statement_and_hands_each_over_once(db: Session) -> None:
    rows = _enqueue(db, 3)
    ids = [r.id for r in rows]
    assert _claim_mine(db, rows, redispatch_after=3600) == ids  # in id order
    assert [(r.attempts, r.dispatched_at is not None) for r in rows] == [
        (1, True)
    ] * 3  # held objects read again
    assert _claim_mine(db, rows, redispatch_after=3600) == []  # handed over, not yet stale
    assert _claim_mine(db, rows, redispatch_after=0) == ids  # stale: its task was lost, handed over again
    assert [r.attempts for r in rows] == [2, 2, 2]


def test_done_rows_are_marked_at_once_and_never_run_twice(db: Session) -> None:
    rows = _enqueue(db, 4)
    ids = [r.id for r in rows]
    seen: list[int] = []

    def batch(_session: Session, group: Sequence[OutboxItem]) -> None:
        seen.extend(r.id for r in group)

    assert outbox.process(db, ids, {}, batch_handlers={KIND: batch}) == 4
    assert seen == ids
    db.expire_all()
    assert all(r.done_at is not None for r in rows)  # written, not only set on the objects
    assert outbox.process(db, ids, {}, batch_handlers={KIND: batch}) == 0  # a task that runs twice
    assert seen == ids
    assert _claim_mine(db, rows, redispatch_after=0) == []  # done rows are never handed over again


def test_a_failing_batch_is_taken_row_by_row_and_only_the_bad_row_stays_undone(db: Session) -> None:
    rows = _enqueue(db, 3)
    ids = [r.id for r in rows]

    def batch(_session: Session, _group: Sequence[OutboxItem]) -> None:
        raise RuntimeError("one row is bad")

    def one(_session: Session, row: OutboxItem) -> None:
        if row.id == ids[1]:
            raise ValueError("this one")

    assert outbox.process(db, ids, {KIND: one}, batch_handlers={KIND: batch}) == 2
    db.expire_all()
    assert [r.done_at is not None for r in rows] == [True, False, True]
    assert rows[1].last_error == "ValueError: this one"


def test_a_failed_row_is_due_again_after_its_backoff_not_the_whole_redispatch_delay(db: Session) -> None:
    rows = _enqueue(db, 2)
    ids = [r.id for r in rows]
    assert _claim_mine(db, rows, redispatch_after=30) == ids

    def one(_session: Session, row: OutboxItem) -> None:
        if row.id == ids[0]:
            raise ConnectionError("the peer is restarting")

    assert outbox.process(db, ids, {KIND: one}, redispatch_after=30) == 1
    # Failed on its first hand-over: due again 1 s later, where a lost task waits the whole 30 s.
    assert _claim_mine(db, rows, redispatch_after=30) == []
    time.sleep(1.2)
    assert _claim_mine(db, rows, redispatch_after=30) == [ids[0]]
    assert rows[0].attempts == 2
    # The delay doubles with the attempts and never exceeds the relay's.
    assert [outbox.retry_delay(n, 30) for n in (1, 2, 3, 5, 6, 9)] == [1, 2, 4, 16, 30, 30]


@pytest.fixture
def small_claims(worker_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's runtime (``worker_env``) with claims of 3 rows and tasks that run in-process."""
    from workers.celery_app import app

    monkeypatch.setenv("SPOC_OUTBOX_BATCH_SIZE", "3")
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    get_settings.cache_clear()


@pytest.mark.usefixtures("small_claims")
def test_one_relay_tick_claims_again_while_claims_come_full() -> None:
    """A tick that took one claim capped the exchange at outbox_batch_size rows per beat interval. The tasks
    run in-process; rows of a kind the worker has no handler for fail, which shows each was handed over and
    tried exactly once, in this one tick."""
    from workers import tasks
    from workers.runtime import runtime

    with unit_of_work(runtime().sessionmaker) as session:
        for i in range(8):
            outbox.enqueue(session, kind=KIND, payload={"i": i})
        session.flush()
        mine = list(session.scalars(select(OutboxItem.id).where(OutboxItem.kind == KIND)))
    try:
        assert tasks.relay() >= 8  # claims of 3, 3, 2 (and any other due rows), all in this tick
        with unit_of_work(runtime().sessionmaker) as session:
            rows = session.scalars(select(OutboxItem).where(OutboxItem.id.in_(mine))).all()
            assert [(r.attempts, (r.last_error or "").split(":")[0]) for r in rows] == [(1, "KeyError")] * 8
        assert tasks.relay() == 0  # failed rows wait their backoff (1 s); nothing else is due
    finally:
        with unit_of_work(runtime().sessionmaker) as session:
            session.execute(delete(OutboxItem).where(OutboxItem.id.in_(mine)))


@pytest.mark.usefixtures("small_claims")
def test_a_relay_tick_stops_claiming_while_a_backlog_waits_for_the_workers() -> None:
    """Backpressure: rows handed over and not yet done count against the tick's further claims, so a backlog
    never waits in the queue past the redispatch delay and is handed over twice."""
    from workers import tasks
    from workers.runtime import runtime

    with unit_of_work(runtime().sessionmaker) as session:
        for i in range(10 * 3 + 8):
            outbox.enqueue(session, kind=KIND, payload={"i": i})
        session.flush()
        mine = list(
            session.scalars(select(OutboxItem.id).where(OutboxItem.kind == KIND).order_by(OutboxItem.id))
        )
        # The first 30 were handed over a moment ago and wait for the workers (in flight).
        session.execute(
            update(OutboxItem).where(OutboxItem.id.in_(mine[:30])).values(dispatched_at=utcnow(), attempts=1)
        )
    try:
        claimed = tasks.relay()
        assert 1 <= claimed <= 3  # the first claim only (any other due rows first): 30 + 3 >= 10 claims of 3
        with unit_of_work(runtime().sessionmaker) as session:
            untouched = session.scalar(
                select(func.count()).where(OutboxItem.id.in_(mine[30:]), OutboxItem.attempts == 0)
            )
        assert untouched is not None
        assert untouched >= 5  # left for the next tick
    finally:
        with unit_of_work(runtime().sessionmaker) as session:
            session.execute(delete(OutboxItem).where(OutboxItem.id.in_(mine)))
