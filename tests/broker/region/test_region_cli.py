"""``spoc region`` as two countries join a region: the governance makes its key offline; each country seeds
its own node and sends its entry (public keys only); the governance signs one directory; each node verifies
and installs it, and then knows the other by its public keys alone. Refusals print one line and exit 1.

The first step runs the installed ``spoc`` executable as a subprocess (the command is installed and its
entry point reaches ``spoc region``); the rest call that entry point's typer app in process with each
node's own environment, which checks the same commands without a Python start-up per step."""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from broker.accounts.service import CHEAP_HASH_VARIABLE
from broker.config import get_settings
from tests.broker.region.region_builders import draft

SPOC = Path(sys.executable).parent / "spoc"


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


Spoc = Callable[..., Ran]


def _installed_app() -> typer.Typer:
    """The typer app that the installed ``spoc`` entry point (``module:main``, which calls ``app()``) runs."""
    [script] = entry_points(group="console_scripts", name="spoc")
    assert script.attr == "main"
    app = importlib.import_module(script.module).app
    assert isinstance(app, typer.Typer)
    return app


@pytest.fixture
def spoc() -> Iterator[Spoc]:
    """``spoc(*args, env=...)``: one command with exactly ``env``'s SPOC_* variables. The umask (``spoc seed``
    sets its own, as the process it normally is would) and the cached settings are put back afterwards."""
    app, runner = _installed_app(), CliRunner()
    umask = os.umask(0o077)
    os.umask(umask)
    # Every SPOC_* variable of this process is unset for the command, but the suite's cheap password hash.
    inherited = (k for k in os.environ if k.startswith("SPOC_") and k != CHEAP_HASH_VARIABLE)
    unset: dict[str, str | None] = dict.fromkeys(inherited, None)

    def run(*args: str, env: dict[str, str]) -> Ran:
        get_settings.cache_clear()
        ours = {k: v for k, v in env.items() if k.startswith("SPOC_")}
        result = runner.invoke(app, list(args), env=unset | ours)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Ran(result.exit_code, result.stdout, result.stderr)

    yield run
    os.umask(umask)
    get_settings.cache_clear()


def test_two_countries_join_a_region_with_the_installed_command(tmp_path: Path, spoc: Spoc) -> None:
    gov = tmp_path / "gov"
    gov.mkdir()
    anchor, key = gov / "anchor.jwks.json", gov / "gov.key.json"
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")}
    env = {
        c: base | {"SPOC_DATA_DIR": str(tmp_path / c), "SPOC_REGION_ANCHOR": str(anchor)}
        for c in ("al", "xk")
    }

    made = subprocess.run(
        [str(SPOC), "region", "keygen", "--out", str(key), "--anchor-out", str(anchor)],
        env=base,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert '"d"' not in anchor.read_text()  # the anchor is public keys only
    again = spoc("region", "keygen", "--out", str(key), "--anchor-out", str(gov / "x.json"), env=base)
    assert again.returncode == 1
    assert "never overwritten" in again.stderr

    entries = []
    for country, port in (("al", 8001), ("xk", 8002)):
        seeded = spoc("seed", "--country", country.upper(), env=env[country])
        assert seeded.returncode == 0, seeded.stderr
        out = gov / f"{country}.entry.json"
        url = f"http://127.0.0.1:{port}"
        entry = spoc(
            "region", "node-entry", "--node-id", country, "--url", url, "--out", str(out), env=env[country]
        )
        assert entry.returncode == 0, entry.stderr
        entries.append(json.loads(out.read_text()))
        assert '"d"' not in out.read_text()

    document = draft(entries, version=4)
    del document["issued_at"], document["valid_until"]  # `sign` sets them: now, now + --valid-days
    (gov / "draft.json").write_text(json.dumps(document))
    signed_path = gov / "region.json"
    sign = spoc(
        "region", "sign", str(gov / "draft.json"), "--key", str(key), "--out", str(signed_path), env=base
    )
    assert sign.returncode == 0, sign.stderr
    checked = spoc("region", "verify", str(signed_path), "--anchor", str(anchor), env=base)
    assert checked.returncode == 0, checked.stderr
    assert "version 4" in checked.stdout
    assert "nodes: al, xk" in checked.stdout

    forged = json.loads(signed_path.read_text())
    forged["directory"]["nodes"][1]["base_url"] = "http://127.0.0.1:6666"
    (gov / "forged.json").write_text(json.dumps(forged))
    refused = spoc("region", "verify", str(gov / "forged.json"), "--anchor", str(anchor), env=base)
    assert refused.returncode == 1
    assert refused.stderr.startswith("spoc: ")
    assert "[directory-signature]" in refused.stderr
    assert refused.stderr.count("\n") == 1

    for country in ("al", "xk"):
        assert spoc("region", "show", env=env[country]).returncode == 1  # nothing installed yet
        assert spoc("region", "install", str(gov / "forged.json"), env=env[country]).returncode == 1
        installed = spoc("region", "install", str(signed_path), env=env[country])
        assert installed.returncode == 0, installed.stderr
        assert "installed western-balkans version 4" in installed.stdout
        shown = spoc("region", "show", env=env[country])
        assert "http://127.0.0.1:8002" in shown.stdout

    with sqlite3.connect(tmp_path / "al" / "spoc.db") as db:
        held = {
            row[0] for row in db.execute("SELECT party_id FROM party_keys WHERE private_sealed IS NOT NULL")
        }
        known = {row[0] for row in db.execute("SELECT party_id FROM party_keys WHERE party_id = 'XK-SPOC'")}
        refusals = db.execute("SELECT count(*) FROM audit_entries WHERE action = 'region:directory-refused'")
        assert refusals.fetchone()[0] == 1
    assert held == {"AL-SPOC", "spoc-log", "spoc-node", "spoc-witness"}
    assert known == {"XK-SPOC"}
