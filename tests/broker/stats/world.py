"""A database of its own for the statistics' tests: migrated, seeded with the demo region (every contact point
on this one node, a hub) and the 2025 traffic of ``traffic.py``, committed.

Its own database because the figures are exact: the session's shared database collects other tests'
messages, and HTTP tests commit. PostgreSQL (:func:`postgres_world`) for the service, API, UI and browser
tests; SQLite (:func:`sqlite_world`) for the installed CLI, so both dialects' SQL is checked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from pydantic import SecretStr

from broker.config import Settings
from broker.crypto import MasterKey
from broker.db import make_engine, make_sessionmaker, unit_of_work
from broker.directory.seed import seed_region
from broker.migrate import upgrade
from tests.broker.stats.traffic import seed_year
from tests.conftest import PG_ADMIN
from tests.factories import Region


@dataclass(frozen=True)
class World:
    settings: Settings
    region: Region
    ids: dict[str, str]  # traffic.py's names -> message ids

    @property
    def env(self) -> dict[str, str]:
        """The environment a ``spoc`` process (or a uvicorn server) needs to run on this world."""
        return {
            "SPOC_ENVIRONMENT": "test",
            "SPOC_DATABASE_URL": self.settings.database_url,
            "SPOC_MASTER_KEY": self.settings.master_key_secret(),
            "SPOC_DATA_DIR": str(self.settings.data_dir),
        }


def _build(settings: Settings) -> World:
    upgrade(settings)
    engine = make_engine(settings)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            master = MasterKey.from_secret(settings.master_key_secret())
            seed = seed_region(session, master, data_dir=settings.data_dir)
            traffic = seed_year(session)
    finally:
        engine.dispose()
    return World(settings, Region(seed, settings.data_dir), dict(traffic.ids))


def postgres_world(folder: Path) -> Iterator[World]:
    name = f"spoc_stats_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    settings = Settings(
        environment="test",
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
        master_key=SecretStr(MasterKey.generate_secret()),
        data_dir=folder,
    )
    try:
        yield _build(settings)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_world(folder: Path) -> World:
    settings = Settings(
        environment="test",
        database_url=f"sqlite:///{folder / 'spoc.db'}",
        master_key=SecretStr(MasterKey.generate_secret()),
        data_dir=folder,
    )
    return _build(settings)
