"""docker-compose.yml cannot be run here (no Docker engine); check its shape and that every command exists."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from broker.cli import app as cli

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_services_and_healthchecks() -> None:
    services = _compose()["services"]
    for name in ("postgres", "redis", "api", "worker", "beat"):
        assert name in services, name
        assert "healthcheck" in services[name], name
    for name in ("api", "worker", "beat", "migrate"):
        env = services[name]["environment"]
        for var in ("SPOC_DATABASE_URL", "SPOC_BROKER_URL", "SPOC_MASTER_KEY"):
            assert var in env, (name, var)
        assert env["SPOC_BROKER_URL"].startswith("redis://")
        assert env["SPOC_DATABASE_URL"].startswith("postgresql+psycopg://")


def test_every_service_command_exists_in_the_project() -> None:
    services = _compose()["services"]
    api = services["api"]["command"]
    assert api[0] == "uvicorn"
    module, _, attr = api[1].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))
    for name in ("worker", "beat"):
        command = services[name]["command"]
        assert command[:3] == ["celery", "-A", "workers.celery_app"]
        celery_app = importlib.import_module(command[2]).app
        assert "spoc.outbox.relay" in celery_app.conf.beat_schedule["outbox-relay"]["task"]
        assert command[3] in ("worker", "beat")
    migrate = services["migrate"]["command"]
    assert migrate[0] == "spoc"
    result = CliRunner().invoke(cli, [*migrate[1:], "--help"])
    assert result.exit_code == 0, result.output


def test_no_secret_in_compose_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${SPOC_MASTER_KEY:?" in text
    assert "${POSTGRES_PASSWORD:?" in text
