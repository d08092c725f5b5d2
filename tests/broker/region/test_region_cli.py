"""``spoc region`` through the installed command, as two countries join a region: the governance makes its
key offline; each country seeds its own node and sends its entry (public keys only); the governance signs
one directory; each node verifies and installs it, and then knows the other by its public keys alone.
Refusals print one line and exit 1."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from tests.broker.region.region_builders import draft

SPOC = Path(sys.executable).parent / "spoc"


def _spoc(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SPOC), *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def test_two_countries_join_a_region_with_the_installed_command(tmp_path: Path) -> None:
    gov = tmp_path / "gov"
    gov.mkdir()
    anchor, key = gov / "anchor.jwks.json", gov / "gov.key.json"
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")}
    env = {
        c: base | {"SPOC_DATA_DIR": str(tmp_path / c), "SPOC_REGION_ANCHOR": str(anchor)}
        for c in ("al", "xk")
    }

    made = _spoc("region", "keygen", "--out", str(key), "--anchor-out", str(anchor), env=base)
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert '"d"' not in anchor.read_text()  # the anchor is public keys only
    again = _spoc("region", "keygen", "--out", str(key), "--anchor-out", str(gov / "x.json"), env=base)
    assert again.returncode == 1
    assert "never overwritten" in again.stderr

    entries = []
    for country, port in (("al", 8001), ("xk", 8002)):
        seeded = _spoc("seed", "--country", country.upper(), env=env[country])
        assert seeded.returncode == 0, seeded.stderr
        out = gov / f"{country}.entry.json"
        url = f"http://127.0.0.1:{port}"
        entry = _spoc(
            "region", "node-entry", "--node-id", country, "--url", url, "--out", str(out), env=env[country]
        )
        assert entry.returncode == 0, entry.stderr
        entries.append(json.loads(out.read_text()))
        assert '"d"' not in out.read_text()

    document = draft(entries, version=4)
    del document["issued_at"], document["valid_until"]  # `sign` sets them: now, now + --valid-days
    (gov / "draft.json").write_text(json.dumps(document))
    signed_path = gov / "region.json"
    sign = _spoc(
        "region", "sign", str(gov / "draft.json"), "--key", str(key), "--out", str(signed_path), env=base
    )
    assert sign.returncode == 0, sign.stderr
    checked = _spoc("region", "verify", str(signed_path), "--anchor", str(anchor), env=base)
    assert checked.returncode == 0, checked.stderr
    assert "version 4" in checked.stdout
    assert "nodes: al, xk" in checked.stdout

    forged = json.loads(signed_path.read_text())
    forged["directory"]["nodes"][1]["base_url"] = "http://127.0.0.1:6666"
    (gov / "forged.json").write_text(json.dumps(forged))
    refused = _spoc("region", "verify", str(gov / "forged.json"), "--anchor", str(anchor), env=base)
    assert refused.returncode == 1
    assert refused.stderr.startswith("spoc: ")
    assert "[directory-signature]" in refused.stderr
    assert refused.stderr.count("\n") == 1

    for country in ("al", "xk"):
        assert _spoc("region", "show", env=env[country]).returncode == 1  # nothing installed yet
        assert _spoc("region", "install", str(gov / "forged.json"), env=env[country]).returncode == 1
        installed = _spoc("region", "install", str(signed_path), env=env[country])
        assert installed.returncode == 0, installed.stderr
        assert "installed western-balkans version 4" in installed.stdout
        shown = _spoc("region", "show", env=env[country])
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
