"""``spoc demo`` from an empty folder with nothing running: starts its own region of separate nodes (XK, AL,
MK, BA, each its own processes and database) in a temporary folder, runs the scenario across them, verifies
every node's audit log, and leaves nothing behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_end_to_end_and_verifies_the_audit_log(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")}
    spoc = Path(sys.executable).with_name("spoc")
    result = subprocess.run(
        [str(spoc), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith("audit log verified:"), lines[-5:]
    assert any("refused at intake" in line and "BA" in line for line in lines)
    assert any(
        line.startswith("AL ") and "AL-ASP: AL-ASP answer" in line for line in lines
    )  # back on XK's node
    assert any(line.startswith("MK ") and "MK-MOI: MK-MOI answer" in line for line in lines)
    verified = [
        line.split(":")[0].strip()
        for line in lines
        if re.match(r"\s+[A-Z]{2} node: audit log verified:", line)
    ]
    assert verified == ["XK node", "AL node", "MK node", "BA node"]
    # each node's log is cosigned by the witnesses of the three other countries' nodes (C2SP tlog-witness)
    cosigned = {
        line.split(":")[0].strip(): line.rsplit("(", 1)[-1].rstrip(")")
        for line in lines
        if "cosigned by every other node (" in line and " node: " in line
    }
    assert cosigned == {
        "XK node": "al, ba, mk",
        "AL node": "ba, mk, xk",
        "MK node": "al, ba, xk",
        "BA node": "al, mk, xk",
    }
    assert "every node (XK, AL, MK, BA)" in lines[-1]
    assert "cosigned by every other node" in lines[-1]
    assert list(tmp_path.iterdir()) == []  # everything lived in its own temporary folder
