"""The fault suite's stack: real processes on 127.0.0.1, and the knobs to break them.

- a **private PostgreSQL cluster** (``initdb`` into a temporary folder, a free port, ``fsync=off``): the
  fault tests restart *it*, never the machine's shared cluster, so other test runs are not disturbed;
- the test session's own **Redis database** (``FLUSHDB`` on that index only);
- the **API** (uvicorn), **Celery workers** (killed with SIGKILL and started again) and **beat**;
- agency **push receivers** (``broker.client.receiver``, in this process) and **pull consumers**
  (threads leasing and acknowledging), all de-duplicating by message id, and recording every message
  their application handled, so that duplicates and losses are counted at the receiving end.

Every wait is bounded; ``Stack.close`` kills whatever is still running and removes the cluster.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.bench.load import credentials
from broker.client.agency import AgencyClient, ClientError, OpenedMessage
from broker.client.officer import OfficerClient
from broker.client.receiver import PushReceiver, ReceiverServer, serve
from broker.config import Settings
from broker.crypto import MasterKey
from broker.db import make_engine, make_sessionmaker, unit_of_work
from broker.delivery.models import DeliveryStatus, InboxItem
from broker.launcher import free_port, prepare
from broker.outbox.models import OutboxItem

REQUIRE = os.environ.get("SPOC_REQUIRE_SERVICES") == "1"
RETRYABLE = frozenset({429, 502, 503, 504})

# Senders → addressed agencies (agreements cover RESTRICTED for all of them); destinations split
# between push (a registered endpoint) and pull (a consumer leasing the inbox).
ROUTES: tuple[tuple[str, str], ...] = (
    ("AL-ASP", "MK-MOI"),
    ("MK-MOI", "AL-ASP"),
    ("HR-POL", "SI-POL"),
    ("SI-POL", "HR-POL"),
    ("ME-UP", "RS-MUP"),
    ("RS-MUP", "ME-UP"),
)
PUSH = ("AL-ASP", "SI-POL", "RS-MUP")
PULL = ("MK-MOI", "HR-POL", "ME-UP")

STACK_ENV = {
    "SPOC_ENVIRONMENT": "test",
    "SPOC_BEAT_INTERVAL_SECONDS": "0.5",
    "SPOC_OUTBOX_REDISPATCH_SECONDS": "4",
    "SPOC_PUSH_LEASE_SECONDS": "6",
    "SPOC_PUSH_TIMEOUT_SECONDS": "3",
    "SPOC_PUSH_CONNECT_TIMEOUT_SECONDS": "1",
    "SPOC_PUSH_BACKOFF_BASE_SECONDS": "0.25",
    "SPOC_PUSH_BACKOFF_CAP_SECONDS": "2",
    "SPOC_PUSH_MAX_ATTEMPTS": "60",
    "SPOC_INBOX_VISIBILITY_SECONDS": "5",
    "SPOC_DB_POOL_SIZE": "5",
    # The agencies' push receivers listen on 127.0.0.1: allow-listed as an administrator would.
    "SPOC_PUSH_ALLOWED_NETWORKS": "127.0.0.1/32",
}


def _unavailable(message: str) -> None:
    if REQUIRE:
        pytest.fail(message)
    pytest.skip(message)


# --- a private PostgreSQL cluster -----------------------------------------------------------------


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivatePostgres:
    """A throw-away cluster this test suite may stop and start at will."""

    def __init__(self) -> None:
        bin_dir = _pg_bin()
        if bin_dir is None:
            _unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        assert bin_dir is not None
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="spoc-fault-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self.start()

    def _run(self, tool: str, *args: str, timeout: float = 30) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout)

    def _ctl(self, *args: str) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", *args)

    def start(self) -> None:
        self._ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


# --- the system under test ------------------------------------------------------------------------


@dataclass
class Stack:
    pg: PrivatePostgres
    redis_url: str
    work_dir: Path
    settings: Settings
    env: dict[str, str]
    url: str = ""
    api: subprocess.Popen[bytes] | None = None
    beat: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _worker_seq: int = 0

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.work_dir / log).open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", *args],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: one killpg reaches its pool too
            )

    def start_api(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.api = self._spawn(
            [
                "uvicorn",
                "contact_points.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            "api.log",
        )
        try:
            wait_for("the API", lambda: _healthy(self.url), timeout=60, alive=[self.api])
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}\n{self.logs()}") from None

    def start_worker(self, concurrency: int = 2) -> subprocess.Popen[bytes]:
        self._worker_seq += 1
        worker = self._spawn(
            [
                "celery",
                "--quiet",
                "-A",
                "workers.celery_app",
                "worker",
                "--loglevel=WARNING",
                f"--concurrency={concurrency}",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"fault{self._worker_seq}-{os.getpid()}@%h",
            ],
            f"worker{self._worker_seq}.log",
        )
        self.workers.append(worker)
        return worker

    def start_beat(self) -> None:
        self.beat = self._spawn(
            [
                "celery",
                "--quiet",
                "-A",
                "workers.celery_app",
                "beat",
                "--loglevel=WARNING",
                "-s",
                str(self.work_dir / "beat-schedule"),
            ],
            "beat.log",
        )

    def kill_worker(self, worker: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its pool (no warm shutdown, tasks in flight are lost)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        self.workers.remove(worker)

    def flush_redis(self) -> None:
        """Lose every queued and unacknowledged task: FLUSHDB on this suite's database index only."""
        redis.Redis.from_url(self.redis_url).flushdb()

    def in_flight(self) -> int:
        """Work handed to Celery and not finished: outbox rows dispatched, pushes leased (not yet settled)."""
        with self.session() as session:
            rows = session.scalar(
                select(func.count())
                .select_from(OutboxItem)
                .where(OutboxItem.dispatched_at.is_not(None), OutboxItem.done_at.is_(None))
            )
            pushes = session.scalar(
                select(func.count())
                .select_from(InboxItem)
                .where(InboxItem.status == DeliveryStatus.PENDING, InboxItem.next_attempt_at > func.now())
            )
        return (rows or 0) + (pushes or 0)

    def when_in_flight(self, timeout: float = 15) -> int:
        """Wait until some work is in flight (so that a fault hits it); returns how much."""
        found = 0

        def busy() -> bool:
            nonlocal found
            found = self.in_flight()
            return found > 0

        wait_for("work in flight", busy, timeout=timeout, interval=0.05)
        return found

    def session(self) -> contextlib.AbstractContextManager[Session]:
        engine = make_engine(self.settings)
        return _closing_engine(engine)

    def close(self) -> None:
        procs = [p for p in (self.api, self.beat, *self.workers) if p is not None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.work_dir.glob("*.log"))
        )


@contextlib.contextmanager
def _closing_engine(engine: Any) -> Iterator[Session]:
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _healthy(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    return False


def wait_for(
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.2,
    alive: list[subprocess.Popen[bytes]] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if alive and any(p.poll() is not None for p in alive):
            raise RuntimeError(f"a process exited while waiting for {what}")
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


@contextlib.contextmanager
def running_stack(redis_url: str, *, workers: int = 1, env: dict[str, str] | None = None) -> Iterator[Stack]:
    """A fresh cluster, migrated and seeded, with the API, ``workers`` workers and beat running."""
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis is not reachable ({exc})")
    pg = PrivatePostgres()
    work_dir = Path(tempfile.mkdtemp(prefix="spoc-fault-"))
    stack = None
    try:
        pg.create_database("spoc")
        secret = MasterKey.generate_secret()
        full_env = {
            **STACK_ENV,
            **(env or {}),
            "SPOC_DATABASE_URL": pg.url("spoc"),
            "SPOC_BROKER_URL": redis_url,
            "SPOC_MASTER_KEY": secret,
            "SPOC_DATA_DIR": str(work_dir),
        }
        settings = Settings(
            environment="test",
            database_url=full_env["SPOC_DATABASE_URL"],
            broker_url=redis_url,
            data_dir=work_dir,
            master_key=SecretStr(secret),
            db_pool_size=2,
        )
        prepare(settings)
        redis.Redis.from_url(redis_url).flushdb()
        stack = Stack(pg, redis_url, work_dir, settings, full_env)
        stack.start_api()
        for _ in range(workers):
            stack.start_worker()
        stack.start_beat()
        yield stack
    finally:
        if stack is not None:
            stack.close()
        pg.destroy()
        shutil.rmtree(work_dir, ignore_errors=True)


# --- the agencies at both ends --------------------------------------------------------------------


def retrying(call: Callable[[], Any], *, timeout: float = 60, statuses: Counter[int] | None = None) -> Any:
    """Call until it succeeds; on 429/5xx wait (at most Retry-After, capped short) and try again.

    ``statuses`` counts the refusals seen (the fault tests assert the API said 503 while the database
    was down)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except ClientError as exc:
            if exc.status not in RETRYABLE or time.monotonic() > deadline:
                raise
            if statuses is not None:
                statuses[exc.status] += 1
            time.sleep(0.3)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


class Sink:
    """What the receiving agencies' applications handled, by message id (thread-safe)."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, opened: OpenedMessage) -> None:
        with self._lock:
            self.handled.append(opened.message_id)

    def unique(self) -> set[str]:
        with self._lock:
            return set(self.handled)

    def duplicated(self) -> int:
        with self._lock:
            return len(self.handled) - len(set(self.handled))


@dataclass
class Agencies:
    """Push receivers and pull consumers for the destinations, plus the senders' clients."""

    stack: Stack
    sink: Sink = field(default_factory=Sink)
    receivers: dict[str, PushReceiver] = field(default_factory=dict)
    servers: dict[str, ReceiverServer] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    pull_redeliveries: int = 0  # leased again after a lost acknowledgement or an expired lease
    _count_lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _clients: list[AgencyClient] = field(default_factory=list)

    def client(self, agency_id: str) -> AgencyClient:
        client = AgencyClient(self.stack.url, credentials(self.stack.work_dir, agency_id), timeout=15)
        self._clients.append(client)
        return client

    def start(self) -> None:
        for agency in PUSH:
            receiver = PushReceiver(self.client(agency), self.sink)
            self.receivers[agency] = receiver
            self.ports[agency] = free_port()
            self.up(agency)
            url = self.servers[agency].url
            retrying(lambda a=agency, u=url: self.client(a).set_push_endpoint(u))  # type: ignore[misc]
        for agency in PULL:
            thread = threading.Thread(target=self._consume, args=(agency,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def up(self, agency: str) -> None:
        self.servers[agency] = serve(self.receivers[agency], port=self.ports[agency])

    def down(self, agency: str) -> None:
        self.servers.pop(agency).stop()

    def _consume(self, agency: str) -> None:
        client = self.client(agency)
        seen: set[str] = set()
        while not self._stop.is_set():
            try:
                items = client.lease(limit=50)
            except (ClientError, httpx.TransportError):
                time.sleep(0.3)
                continue
            for item in items:
                try:
                    opened = client.open(item)
                    if opened.message_id not in seen:  # the receiver's de-duplication by message id
                        self.sink(opened)
                        seen.add(opened.message_id)
                    else:
                        with self._count_lock:
                            self.pull_redeliveries += 1
                    client.ack(opened)
                except (ClientError, httpx.TransportError):
                    continue  # not acknowledged: it comes back after the visibility timeout
            if not items:
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        for server in self.servers.values():
            server.stop()
        for client in self._clients:
            client.close()


def officers(
    stack: Stack, countries: set[str], stop: threading.Event, statuses: Counter[int]
) -> list[threading.Thread]:
    """Scripted officers: approve every outbound message, route every inbound one to its addressee."""
    accounts = __import__("json").loads((stack.work_dir / "demo-accounts.json").read_text())

    def run(cc: str) -> None:
        name = f"{cc.lower()}-officer"
        client = retrying(lambda: OfficerClient(stack.url, name, accounts[name]["password"], timeout=15))
        with client:
            while not stop.is_set():
                did = 0
                try:
                    for item in client.queue("outbound"):
                        _decide(client, item["message_id"], "approve", statuses)
                        did += 1
                    for item in client.queue("inbound"):
                        _decide(
                            client,
                            item["message_id"],
                            "route",
                            statuses,
                            route_to_agency=item["destination_agency"],
                        )
                        did += 1
                except ClientError as exc:
                    statuses[exc.status] += 1
                    time.sleep(0.3)
                except httpx.TransportError:
                    time.sleep(0.3)
                if not did:
                    time.sleep(0.2)

    threads = [threading.Thread(target=run, args=(cc,), daemon=True) for cc in sorted(countries)]
    for thread in threads:
        thread.start()
    return threads


def _decide(
    client: OfficerClient, message_id: str, action: str, statuses: Counter[int], **fields: Any
) -> None:
    try:
        client.decide(message_id, action, **fields)
    except ClientError as exc:
        statuses[exc.status] += 1
        if exc.status not in (409, *RETRYABLE):  # 409: decided meanwhile (a retry of a committed decision)
            raise
