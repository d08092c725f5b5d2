"""Readiness: can this API process do its work now? ``/health`` only says the process answers.

Three checks, each named in the answer (never with a secret or a connection string):

- ``database``: ``SELECT 1`` through the process's own pool;
- ``queue``: the task queue answers (Redis ``PING``; the embedded SQLite queue opens; any other kombu
  transport connects), since without it nothing committed to the outbox moves on;
- ``keys``: every signing key this node holds opens under the master key (a wrong ``SPOC_MASTER_KEY`` fails
  here, not at the first signature), and there is at least one.

A failed check gives 503 problem+json listing each check's result (``broker.ops.api``); a load balancer
takes the process out of rotation and ``broker.launcher`` waits for 200 before it reports a start.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import redis
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from broker.config import Settings
from broker.crypto import MasterKey
from broker.errors import SpocError
from broker.keys.models import PartyKey

OK = "ok"
TIMEOUT_SECONDS = 2.0
CACHE_SECONDS = 2.0
"""How long one round of checks answers ``/ready`` (per process)."""


class Readiness:
    """The checks of one API process, with their clients made once."""

    def __init__(self, factory: sessionmaker[Session], master: MasterKey, settings: Settings) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._last: tuple[float, dict[str, str]] | None = None
        self._master = master
        self._broker_url = settings.broker_url
        self._redis = (
            redis.Redis.from_url(
                settings.broker_url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
            )
            if settings.broker_url.startswith(("redis://", "rediss://"))
            else None
        )

    def check(self) -> dict[str, str]:
        """Each check's result: ``"ok"`` or ``"failed: <kind of error>"``.

        ``/ready`` is anonymous (load balancers call it), so one answer serves every caller for
        ``CACHE_SECONDS``: a flood of probes costs one round of checks (a query, a ping, unsealing the keys)
        per process per interval, not one per request."""
        now = time.monotonic()
        with self._lock:
            if self._last is not None and now - self._last[0] < CACHE_SECONDS:
                return dict(self._last[1])
            results = self._run()
            self._last = (time.monotonic(), results)
            return dict(results)

    def _run(self) -> dict[str, str]:
        checks: dict[str, Callable[[], None]] = {
            "database": self._database,
            "queue": self._queue,
            "keys": self._keys,
        }
        results = {}
        for name, run in checks.items():
            try:
                run()
            except Exception as exc:  # any failure is "not ready"; its kind is reported, never its text
                results[name] = f"failed: {type(exc).__name__}"
            else:
                results[name] = OK
        return results

    def _database(self) -> None:
        with self._factory() as session:
            session.execute(text("SELECT 1"))

    def _queue(self) -> None:
        if self._redis is not None:
            self._redis.ping()
            return
        if self._broker_url.startswith("sqla+"):
            # kombu's SQL transport (the embedded default): the queue's database opens and answers.
            engine = create_engine(self._broker_url.removeprefix("sqla+"), poolclass=NullPool)
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            finally:
                engine.dispose()
            return
        from kombu import Connection  # another transport (e.g. RabbitMQ): kombu connects to it

        with contextlib.closing(Connection(self._broker_url, connect_timeout=TIMEOUT_SECONDS)) as connection:
            connection.ensure_connection(max_retries=1)

    def _keys(self) -> None:
        with self._factory() as session:
            held = session.execute(
                select(PartyKey.kid, PartyKey.private_sealed).where(
                    PartyKey.private_sealed.is_not(None), PartyKey.status == "active", PartyKey.use == "sig"
                )
            ).all()
        if not held:
            raise NoKeyHeld("this node holds no signing key")
        for kid, sealed in held:
            self._master.decrypt(sealed or "", context=kid)  # never empty: selected for being sealed


class NoKeyHeld(SpocError):
    """The node holds no active signing key (not seeded, or every key retired)."""
