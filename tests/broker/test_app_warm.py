"""The API loads its key registry and directory snapshots at start-up, so that the first requests to arrive
together do not each load them; a database not up yet does not stop it from starting."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from broker.app import create_app
from broker.config import Settings
from broker.directory import service as directory
from broker.keys import service as keys
from tests.factories import Region


def test_the_snapshots_are_loaded_before_the_first_request(settings: Settings, region: Region) -> None:
    keys._snapshots.clear()
    directory._snapshots.clear()
    with TestClient(create_app(settings)):
        assert keys._snapshots
        assert directory._snapshots


def test_an_unreachable_database_at_start_up_is_only_a_warning(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    down = settings.model_copy(
        update={"database_url": "postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2"}
    )
    with caplog.at_level(logging.WARNING, logger="spoc.app"), TestClient(create_app(down)) as http:
        assert http.get("/health").status_code == 200
    assert any("snapshots not loaded at start-up" in r.getMessage() for r in caplog.records)
