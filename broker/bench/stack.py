"""The stack under test: a fresh PostgreSQL database, a Redis database, API and worker processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import redis
from pydantic import SecretStr

from broker.config import Settings
from broker.crypto import MasterKey
from broker.launcher import free_port, prepare

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Stack:
    url: str
    settings: Settings
    env: dict[str, str]
    dsn: str
    redis_url: str
    processes: list[subprocess.Popen[bytes]]


@contextlib.contextmanager
def database() -> Iterator[str]:
    name = f"spoc_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - our interpreter and modules, no shell
            [sys.executable, "-m", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.contextmanager
def running(
    work_dir: Path, *, api_workers: int = 2, worker_concurrency: int = 2, redis_db: int = 12
) -> Iterator[Stack]:
    """A seeded database and the whole system as child processes; everything is removed afterwards."""
    with database() as name:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        redis_url = f"redis://127.0.0.1:6379/{redis_db}"
        redis.Redis.from_url(redis_url).flushdb()
        secret = MasterKey.generate_secret()
        env = {
            "SPOC_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            "SPOC_BROKER_URL": redis_url,
            "SPOC_MASTER_KEY": secret,
            "SPOC_DATA_DIR": str(work_dir),
            "SPOC_ENVIRONMENT": "test",
            "SPOC_BEAT_INTERVAL_SECONDS": "0.5",
            # The per-agency limit stays on (each call still takes its tokens in Redis) but high enough
            # that the benchmark measures the exchange, not the limit a deployment would choose.
            "SPOC_RATE_LIMIT_PER_SECOND": "100000",
            "SPOC_RATE_LIMIT_BURST": "100000",
            "SPOC_MAX_BATCH_ENVELOPES": "500",  # so that `spoc bench --batch` can try up to the wire's limit
        }
        settings = Settings(
            database_url=env["SPOC_DATABASE_URL"],
            broker_url=redis_url,
            data_dir=work_dir,
            master_key=SecretStr(secret),
        )
        prepare(settings)
        port = free_port()
        procs = [
            _spawn(
                [
                    "uvicorn",
                    "contact_points.app:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    str(api_workers),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                env,
                work_dir / "api.log",
            ),
            _spawn(
                [
                    "celery",
                    "--quiet",
                    "-A",
                    "workers.celery_app",
                    "worker",
                    "-B",
                    "--loglevel=WARNING",
                    f"--concurrency={worker_concurrency}",
                    "-n",
                    f"bench-{port}@%h",
                ],
                env,
                work_dir / "worker.log",
            ),
        ]
        stack = Stack(f"http://127.0.0.1:{port}", settings, env, dsn, redis_url, procs)
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{stack.url}/health", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"the stack did not start; see {work_dir}/api.log and worker.log")
                time.sleep(0.2)
            yield stack
        finally:
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
