"""The PostgreSQL pool (``broker.db.make_engine``): a connection that died while it rested in the pool is
never handed to a request; one that died between two quick uses fails once and takes the pool with it.

Connections are killed for real, by ``pg_terminate_backend`` from a second connection, as a restart of
PostgreSQL or a failover would."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from broker import db as broker_db
from broker.config import Settings
from broker.db import make_engine


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(settings: Settings, pid: int) -> None:
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    time.sleep(0.1)  # the backend is gone before the pool hands its connection out again


@pytest.fixture
def small_pool(settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setattr(broker_db, "PING_AFTER_IDLE_SECONDS", 0.3)
    pool = make_engine(settings.model_copy(update={"db_pool_size": 1}))
    yield pool
    pool.dispose()


def test_a_connection_that_died_while_resting_is_replaced_before_use(
    small_pool: Engine, settings: Settings
) -> None:
    first = _backend_pid(small_pool)
    assert _backend_pid(small_pool) == first  # the pool hands the same connection out again
    _terminate(settings, first)
    time.sleep(0.4)  # longer than the rest after which a connection is pinged
    assert _backend_pid(small_pool) != first  # pinged, found dead, replaced: the request never saw it


def test_a_connection_used_moments_ago_is_not_pinged_and_a_break_fails_once(
    small_pool: Engine, settings: Settings
) -> None:
    first = _backend_pid(small_pool)
    _terminate(settings, first)  # within the rest that skips the ping
    with pytest.raises(OperationalError):
        _backend_pid(small_pool)
    assert _backend_pid(small_pool) != first  # the pool was invalidated: the next use gets a new connection
