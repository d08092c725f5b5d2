"""``spoc keys list|rotate|revoke`` against the test database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker.cli import app
from broker.client.credentials import AgencyCredentials
from broker.config import Settings, get_settings
from broker.crypto import KeyPair
from tests.factories import Region


@pytest.fixture
def cli_env(settings: Settings, master_secret: str, region: Region) -> dict[str, str]:
    get_settings.cache_clear()
    return {
        "SPOC_DATABASE_URL": settings.database_url,
        "SPOC_MASTER_KEY": master_secret,
        "SPOC_DATA_DIR": str(settings.data_dir),
    }


def _run(env: dict[str, str], *args: str) -> tuple[int, str]:
    get_settings.cache_clear()
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output + (
        repr(result.exception) if result.exception and not isinstance(result.exception, SystemExit) else ""
    )


def test_list_shows_every_key_of_a_party(cli_env: dict[str, str]) -> None:
    code, out = _run(cli_env, "keys", "list", "RS-SPOC")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert len(lines) >= 2
    assert {line.split()[1] for line in lines} >= {"sig", "enc"}


def test_unknown_party_is_a_one_line_error(cli_env: dict[str, str]) -> None:
    code, out = _run(cli_env, "keys", "list", "ZZ-NOPE")
    assert code == 1
    assert "no party ZZ-NOPE" in out


def test_rotate_a_contact_point_then_its_old_keys_are_retired(cli_env: dict[str, str]) -> None:
    _, before = _run(cli_env, "keys", "list", "ME-SPOC")
    code, out = _run(cli_env, "keys", "rotate", "ME-SPOC")
    assert code == 0, out
    new_kids = {line.split()[-1] for line in out.strip().splitlines()}
    _, after = _run(cli_env, "keys", "list", "ME-SPOC")
    status = {line.split()[0]: line.split()[2] for line in after.strip().splitlines()}
    assert all(status[kid] == "active" for kid in new_kids)
    old = {line.split()[0] for line in before.strip().splitlines() if line.split()[2] == "active"}
    assert old
    assert all(status[kid] == "retired" for kid in old)


def test_rotate_an_agency_writes_its_new_private_keys(
    cli_env: dict[str, str], region: Region, tmp_path: Path
) -> None:
    creds = region.seed.agencies["ME-FIU"]
    path = creds.save(tmp_path)
    code, out = _run(cli_env, "keys", "rotate", "ME-FIU", "--credentials", str(path))
    assert code == 0, out
    rotated = AgencyCredentials.load(path)
    assert rotated.signing_key != creds.signing_key
    new_kid = KeyPair.from_private_jwk(rotated.signing_key).kid
    assert new_kid in out
    assert "d" not in json.dumps([line for line in out.splitlines() if "{" in line])  # no private JWK printed


def test_revoke_needs_a_reason_and_records_it(cli_env: dict[str, str], region: Region) -> None:
    kid = KeyPair.from_private_jwk(region.seed.agencies["ME-CUS"].signing_key).kid
    # "--" before the kid: a base64url thumbprint may begin with "-" (1 in 64), which a parser reads as an option.
    code, out = _run(cli_env, "keys", "revoke", "--", kid)
    assert code == 2  # usage: --reason is required
    code, out = _run(cli_env, "keys", "revoke", "--reason", "compromised token", "--", kid)
    assert code == 0, out
    _, listing = _run(cli_env, "keys", "list", "ME-CUS")
    assert any(
        kid in line and "revoked" in line and "compromised token" in line for line in listing.splitlines()
    )
