"""Shared fixtures: one PostgreSQL database per test run, built by the Alembic migrations and seeded once.

Service-level tests run inside a transaction that is rolled back after each test. Tests that go over
HTTP or through worker processes commit for real; they make their own messages and look only at those.
With SPOC_REQUIRE_SERVICES=1 (CI) a missing PostgreSQL or Redis fails the run instead of skipping.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from broker.config import Settings, get_settings
from broker.crypto import MasterKey
from broker.db import make_engine, make_sessionmaker, unit_of_work
from broker.directory.seed import seed_region
from broker.keys.service import DatabaseKeyStore
from broker.migrate import upgrade
from tests.factories import Region

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379"
REQUIRE = os.environ.get("SPOC_REQUIRE_SERVICES") == "1"
# Accounts made in tests (the seeded region, every `spoc seed`/`spoc run` the tests start) hash their
# passwords with argon2's cheapest parameters: what is tested is who may log in, not argon2's cost. The
# default cost is kept by a run that sets this to 0 (broker.accounts.service, Settings).
os.environ.setdefault("SPOC_TEST_CHEAP_PASSWORD_HASH", "1")


def _unavailable(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable on 127.0.0.1 ({type(exc).__name__}: {exc}); run `make services`"
    if REQUIRE:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"spoc_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _unavailable("PostgreSQL", exc)
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _redis_db() -> int:
    """A Redis database for this run: odd 1..13, its even neighbour left for the fault suite (which flushes
    it; tests/faults/conftest.py). Under pytest-xdist each worker draws from its own residue class, so two
    workers of one run never share a database."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    slots = [s for s in range(7) if s % workers == worker % workers] or list(range(7))
    return 1 + 2 * secrets.choice(slots)


@pytest.fixture(scope="session")
def redis_url() -> str:
    db = _redis_db()
    try:
        redis.Redis.from_url(f"{REDIS_URL}/{db}", socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    return f"{REDIS_URL}/{db}"


@pytest.fixture(scope="session")
def master_secret() -> str:
    return MasterKey.generate_secret()


@pytest.fixture(scope="session")
def settings(pg_url: str, master_secret: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        environment="test",
        database_url=pg_url,
        master_key=SecretStr(master_secret),
        data_dir=tmp_path_factory.mktemp("data"),
        # The tests' agency receivers listen on 127.0.0.1, which push delivery refuses unless an
        # administrator allow-lists it (broker.delivery.egress); the tests are that administrator.
        push_allowed_networks="127.0.0.1/32,::1/128",
    )


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    upgrade(settings)
    engine = make_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def region(engine: Engine, settings: Settings) -> Region:
    with unit_of_work(make_sessionmaker(engine)) as session:
        result = seed_region(
            session, MasterKey.from_secret(settings.master_key_secret()), data_dir=settings.data_dir
        )
    return Region(result, settings.data_dir)


@pytest.fixture
def db(engine: Engine, region: Region) -> Iterator[Session]:
    """A session whose every change is rolled back after the test (services flush, never commit)."""
    connection = engine.connect()
    transaction = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    yield session
    session.close()
    transaction.rollback()
    connection.close()


@pytest.fixture
def keys(db: Session, settings: Settings) -> DatabaseKeyStore:
    return DatabaseKeyStore(db, MasterKey.from_secret(settings.master_key_secret()))


@pytest.fixture(scope="session")
def app(settings: Settings, region: Region) -> FastAPI:
    from contact_points.app import create_app

    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture(autouse=True)
def _clear_settings_cache() -> Iterator[None]:
    yield
    get_settings.cache_clear()


# Folders whose tests share one package- or session-scoped fixture that is expensive to build (a running
# stack, a seeded world, a browser). Under pytest-xdist (``make test`` runs ``-n 2``) each of these folders,
# and every other module, goes to one worker whole and in order, so module and package fixtures are built
# once and tests that build on each other's state within a module keep seeing it. (xdist's own
# ``--dist loadgroup`` renames node ids, which pytest 9 no longer lets it do; a scheduler does it here.)
SHARED_FOLDERS = ("tests/access/", "tests/browser/", "tests/faults/")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]  # xdist has no py.typed

    class ByModule(LoadScopeScheduling):  # type: ignore[misc]  # an untyped base, see above
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return next((folder for folder in SHARED_FOLDERS if module.startswith(folder)), module)

    return ByModule(config, log)


FAULT_REPORTS: list[str] = []  # "name: counts" of each fault and soak run, from whichever worker ran it


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":
        FAULT_REPORTS.extend(
            str(value) for key, value in report.user_properties if key == "delivery under faults"
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FAULT_REPORTS:
        terminalreporter.section("delivery under faults")
        for line in FAULT_REPORTS:
            terminalreporter.write_line(line)


@pytest.fixture
def worker_env(settings: Settings, region: Region, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The worker's runtime on the test database (migrated and seeded by ``region``), for tasks run
    in-process."""
    from workers.runtime import runtime

    monkeypatch.setenv("SPOC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SPOC_MASTER_KEY", settings.master_key_secret())
    monkeypatch.setenv("SPOC_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    runtime.cache_clear()
    yield
    runtime().sessionmaker.kw["bind"].dispose()
    runtime.cache_clear()
    get_settings.cache_clear()
