"""The worker's runtime on the test database, for tests that run tasks in-process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker.config import Settings, get_settings
from tests.factories import Region


@pytest.fixture
def worker_env(settings: Settings, region: Region, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The worker's runtime on the test database (migrated and seeded by ``region``)."""
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
