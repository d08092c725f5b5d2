"""``spoc users add`` through the installed ``spoc`` executable, against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.config import Settings
from tests.factories import Region

SPOC = Path(sys.executable).parent / "spoc"


@pytest.fixture
def env(settings: Settings, master_secret: str, region: Region) -> dict[str, str]:
    return {
        **os.environ,
        "SPOC_DATABASE_URL": settings.database_url,
        "SPOC_MASTER_KEY": master_secret,
        "SPOC_DATA_DIR": str(settings.data_dir),
    }


def _spoc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SPOC), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _country(engine: Engine, username: str) -> tuple[bool, str | None]:
    with Session(engine) as session:
        user = session.scalar(select(User).where(User.username == username))
        return user is not None, user.country if user else None


def test_users_add_refuses_an_auditor_without_a_country_or_regional(
    env: dict[str, str], engine: Engine
) -> None:
    name = f"cli-aud-{uuid.uuid4().hex[:8]}"
    refused = _spoc(env, "users", "add", name, "--role", "auditor")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "give the auditor a country" in refused.stderr
    assert _country(engine, name) == (False, None)

    national = _spoc(env, "users", "add", name, "--role", "auditor", "--country", "BA")
    assert national.returncode == 0, national.stderr
    assert _country(engine, name) == (True, "BA")

    regional_name = f"cli-aud-{uuid.uuid4().hex[:8]}"
    regional = _spoc(env, "users", "add", regional_name, "--role", "auditor", "--regional")
    assert regional.returncode == 0, regional.stderr
    assert _country(engine, regional_name) == (True, None)
