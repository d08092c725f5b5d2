"""``spoc region`` through the installed command: the governance's key, signing, offline verification, and a
node's install and show on the embedded default (SQLite), refusals printed as one line and exit 1."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.broker.region.region_builders import draft, nodes

SPOC = Path(sys.executable).parent / "spoc"


def _spoc(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SPOC), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_governance_signs_offline_and_a_node_installs_only_what_verifies(tmp_path: Path) -> None:
    gov, node = tmp_path / "gov", tmp_path / "node"
    gov.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")}
    env |= {"SPOC_DATA_DIR": str(node), "SPOC_REGION_ANCHOR": str(gov / "anchor.jwks.json")}

    made = _spoc(
        "region",
        "keygen",
        "--out",
        str(gov / "gov.key.json"),
        "--anchor-out",
        str(gov / "anchor.jwks.json"),
        env=env,
    )
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE((gov / "gov.key.json").stat().st_mode) == 0o600
    assert '"d"' not in (gov / "anchor.jwks.json").read_text()  # the anchor is public keys only
    again = _spoc(
        "region", "keygen", "--out", str(gov / "gov.key.json"), "--anchor-out", str(gov / "x.json"), env=env
    )
    assert again.returncode == 1
    assert "never overwritten" in again.stderr

    document = draft(nodes("AL", "XK", "MK"), version=4)
    del document["issued_at"], document["valid_until"]  # `sign` sets them: now, now + --valid-days
    (gov / "draft.json").write_text(json.dumps(document))
    key, out = str(gov / "gov.key.json"), str(gov / "region.json")
    sign = _spoc(
        "region", "sign", str(gov / "draft.json"), "--key", key, "--out", out, "--valid-days", "7", env=env
    )
    assert sign.returncode == 0, sign.stderr
    checked = _spoc(
        "region", "verify", str(gov / "region.json"), "--anchor", str(gov / "anchor.jwks.json"), env=env
    )
    assert checked.returncode == 0, checked.stderr
    assert "version 4" in checked.stdout
    assert "al, xk, mk" in checked.stdout

    forged = json.loads((gov / "region.json").read_text())
    forged["directory"]["nodes"][0]["base_url"] = "http://127.0.0.1:6666"
    (gov / "forged.json").write_text(json.dumps(forged))
    refused = _spoc(
        "region", "verify", str(gov / "forged.json"), "--anchor", str(gov / "anchor.jwks.json"), env=env
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("spoc: ")
    assert "[directory-signature]" in refused.stderr
    assert refused.stderr.count("\n") == 1

    assert _spoc("db", "upgrade", env=env).returncode == 0
    assert _spoc("region", "show", env=env).returncode == 1
    installed = _spoc("region", "install", str(gov / "region.json"), env=env)
    assert installed.returncode == 0, installed.stderr
    assert "installed western-balkans version 4" in installed.stdout
    assert _spoc("region", "install", str(gov / "forged.json"), env=env).returncode == 1
    shown = _spoc("region", "show", env=env)
    assert shown.returncode == 0
    assert "version 4" in shown.stdout
    assert "http://127.0.0.1:8102" in shown.stdout  # mk
