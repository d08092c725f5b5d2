"""Start and stop the whole system as child processes: API (uvicorn) and a Celery worker with beat.

Used by ``spoc run`` (foreground, Ctrl-C stops everything) and ``spoc demo`` (a throw-away system in a
temporary folder on a free port). Children are started in their own process group so one signal
reaches all of a child's own children (Celery's pool) and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.config import Settings
from broker.crypto import MasterKey
from broker.db import make_engine, make_sessionmaker, unit_of_work
from broker.directory.models import ContactPoint
from broker.directory.seed import AGENCIES, SeedResult, is_seeded, seed_region
from broker.errors import InvalidInput, SpocError
from broker.files import secure_data_dir
from broker.migrate import upgrade
from broker.ops.metrics import MULTIPROC_ENV
from broker.region.sync import held_parties


class PortInUse(SpocError):
    """The API's port is taken by another program (or another spoc)."""

    status = 409
    slug = "port-in-use"
    title = "Port in use"


class StartupFailed(SpocError):
    """A process of the system exited, or the API did not answer, at start-up."""

    status = 503
    slug = "startup-failed"
    title = "Start-up failed"


def check_port(host: str, port: int) -> None:
    """Refuse to start when ``host:port`` cannot be bound (before anything is printed or started).

    Binds and releases the port as uvicorn will (``SO_REUSEADDR``, so a port in TIME_WAIT passes);
    another program listening there makes the bind fail. A port taken between this check and uvicorn's
    bind still stops the start: the API process exits and ``start`` says so.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InvalidInput(f"cannot listen on {host}: the address does not resolve ({exc.strerror})") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise PortInUse(
                f"port {port} on {host} is already in use ({exc.strerror}); choose another with "
                f"`spoc run --port 8080` (or `make run PORT=8080`)"
            ) from exc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports on 127.0.0.1 (a local region's nodes take PORT, PORT+1, …)."""
    for _ in range(50):
        first = free_port()
        try:
            for port in range(first, first + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise StartupFailed(f"no {count} consecutive free ports on 127.0.0.1")


def prepare(settings: Settings, *, countries: Collection[str] | None = None) -> SeedResult | None:
    """Migrate the database and seed the demo region (or, with ``countries``, one node's part of it) if it is
    empty. Returns the seed, or None if it existed."""
    secure_data_dir(settings.data_dir, settings.database_url, settings.broker_url)
    upgrade(settings)
    engine = make_engine(settings)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            if is_seeded(session):
                _check_same_countries(session, settings, countries)
                return None
            master = MasterKey.from_secret(settings.master_key_secret())
            return seed_region(session, master, data_dir=settings.data_dir, countries=countries)
    finally:
        engine.dispose()


def _check_same_countries(session: Session, settings: Settings, countries: Collection[str] | None) -> None:
    """A database seeded for some countries is not silently run as a node of others: a folder of XK's node
    started with ``--country AL`` would serve XK under AL's name (or a one-country node run as the hub)."""
    held = {
        cp.country
        for cp in session.scalars(select(ContactPoint).where(ContactPoint.id.in_(held_parties(session))))
    }
    wanted = set(countries) if countries is not None else set(AGENCIES)
    if held and held != wanted:
        raise InvalidInput(
            f"the database of {settings.data_dir} holds the contact points of {', '.join(sorted(held))}, "
            f"not {', '.join(sorted(wanted))}; use another data folder (SPOC_DATA_DIR)"
        )


@dataclass
class System:
    url: str
    data_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_dir: Path | None = None

    def stop(self, timeout: float = 10.0) -> None:
        stop_all([self], timeout=timeout)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.processes)


def stop_all(systems: Sequence[System], *, timeout: float = 10.0) -> None:
    """Stop every process of ``systems`` at once: SIGTERM to all (each leader shuts its own children down,
    Celery with a warm shutdown), then one shared deadline, then SIGKILL to the process group of any left."""
    processes = [p for system in systems for p in system.processes]
    for proc in processes:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in processes:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _spawn(command: list[str], env: dict[str, str], log: Path | None) -> subprocess.Popen[bytes]:
    """Run ``python -m <command>`` in its own session, output to ``log`` (or inherited)."""
    if log is None:
        return subprocess.Popen([sys.executable, "-m", *command], env=env, start_new_session=True)  # noqa: S603
    with log.open("ab") as out:  # the child keeps its own descriptor; ours is closed at once
        return subprocess.Popen(  # noqa: S603 - our own interpreter and modules, no shell
            [sys.executable, "-m", *command],
            env=env,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def spawn(
    *,
    host: str,
    port: int,
    data_dir: Path,
    env: dict[str, str],
    log_dir: Path | None = None,
    worker_concurrency: int = 2,
) -> System:
    """Start API and worker+beat with ``env`` (the SPOC_* variables over ours); do not wait for them.

    Both write their metrics into one directory, ``DATA_DIR/metrics`` emptied here (unless the environment
    names another), so the API's ``/metrics`` adds the worker's counters up (``broker.ops.metrics``).
    The worker's node name carries the port (``spoc-PORT@host``), so several nodes on one machine (a region
    on embedded defaults) never answer for each other in Celery's remote control."""
    full_env = {**os.environ, **env}
    full_env.setdefault(MULTIPROC_ENV, str(fresh_metrics_dir(data_dir)))
    api_cmd = [
        "uvicorn",
        "contact_points.app:create_app",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    worker_cmd = [
        "celery",
        "--quiet",
        "-A",
        "workers.celery_app",
        "worker",
        "-B",
        "--loglevel=WARNING",
        f"--concurrency={worker_concurrency}",
        "-n",
        f"spoc-{port}@%h",
    ]
    api = _spawn(api_cmd, full_env, log_dir / "api.log" if log_dir else None)
    worker = _spawn(worker_cmd, full_env, log_dir / "worker.log" if log_dir else None)
    return System(url=f"http://{host}:{port}", data_dir=data_dir, processes=[api, worker], log_dir=log_dir)


def fresh_metrics_dir(data_dir: Path) -> Path:
    """``data_dir/metrics``, emptied: the metrics files of processes that are gone would otherwise be added
    to the new ones' (the directory holds counts only, nothing to keep)."""
    folder = data_dir.resolve() / "metrics"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    return folder


def wait_ready(systems: Sequence[System], *, timeout: float = 90.0) -> None:
    """Wait until every system's API answers ``/ready`` (database, queue and keys usable, ``broker.ops.ready``);
    stop them all if one exits or the time runs out."""
    waiting = list(systems)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for system in list(waiting):
            if not system.alive():
                stop_all(systems)
                where = (
                    f" ({system.log_dir}/api.log, worker.log)" if system.log_dir else " (its output is above)"
                )
                raise StartupFailed(f"a process of {system.url} exited at start-up; see its log{where}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{system.url}/ready", timeout=3).status_code == 200:
                    waiting.remove(system)
        if waiting:
            time.sleep(0.2)
    if waiting:
        stop_all(systems)
        raise StartupFailed(f"the API was not ready at {waiting[0].url}/ready within {timeout:.0f} s")


def start(
    settings: Settings,
    *,
    host: str,
    port: int,
    env: dict[str, str],
    log_dir: Path | None = None,
    worker_concurrency: int = 2,
) -> System:
    """Start API and worker+beat with ``env`` (the SPOC_* variables), wait until the API answers."""
    system = spawn(
        host=host,
        port=port,
        data_dir=settings.data_dir,
        env=env,
        log_dir=log_dir,
        worker_concurrency=worker_concurrency,
    )
    wait_ready([system])
    return system


@contextlib.contextmanager
def running(
    settings: Settings, *, host: str, port: int, env: dict[str, str], log_dir: Path | None = None
) -> Iterator[System]:
    system = start(settings, host=host, port=port, env=env, log_dir=log_dir)
    try:
        yield system
    finally:
        system.stop()
