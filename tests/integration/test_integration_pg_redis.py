"""The whole exchange as real processes: uvicorn and a Celery worker (with beat) on PostgreSQL + Redis.

Nothing is mocked or run in-process: the API and the worker are child processes, the queue is Redis,
and the scenario is driven over HTTP by the agency and officer clients.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import Settings
from broker.demo import hub, run_scenario
from broker.launcher import free_port, running
from tests.factories import Region

pytestmark = pytest.mark.integration


def test_scenario_on_postgres_and_redis_with_real_worker(
    settings: Settings, region: Region, redis_url: str, master_secret: str, tmp_path: Path
) -> None:
    env = {
        "SPOC_DATABASE_URL": settings.database_url,
        "SPOC_BROKER_URL": redis_url,
        "SPOC_MASTER_KEY": master_secret,
        "SPOC_DATA_DIR": str(tmp_path),
        "SPOC_ENVIRONMENT": "test",
    }
    lines: list[str] = []
    with running(settings, host="127.0.0.1", port=free_port(), env=env, log_dir=tmp_path) as system:
        rows, report = run_scenario(*hub(system.url, region.data_dir), lines.append)
        assert system.alive()
    outcomes = {row.country: row.outcome for row in rows}
    assert outcomes == {"AL": "answered", "MK": "answered", "BA": "refused at intake"}
    details = {row.country: row.detail for row in rows}
    assert details["AL"] == "AL-ASP: AL-ASP answer"
    assert "no active agreement between XK and BA" in details["BA"]
    assert report["ok"] is True
    assert report["size"] > 0
    worker_log = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in worker_log
