"""``spoc bench --hop-only --hop-messages N`` through the installed command, with a tiny N: two nodes start (own
PostgreSQL databases, API and Celery worker processes), the messages cross, and the figures are printed beside
the latest single-node run. Only that it runs and what it reports are checked, never how fast."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

SPOC = Path(sys.executable).parent / "spoc"


def test_the_hop_benchmark_runs_two_nodes_and_prints_its_figures(tmp_path: Path, redis_url: str) -> None:
    del redis_url  # only to skip (or fail under SPOC_REQUIRE_SERVICES) when Redis is down
    single = {
        "date": "2026-01-02T03:04:05+00:00",
        "submit": [{"concurrency": 4, "accepted_per_s": 81.2, "p99_ms": 80.4}],
        "end_to_end": {"delivered_per_s": 43.1, "p99_submit_to_delivery_s": 21.37},
    }
    (tmp_path / "2026-01-02.json").write_text(json.dumps(single))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")}
    ran = subprocess.run(
        [str(SPOC), "bench", "--hop-only", "--hop-messages", "2", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    out = ran.stdout
    assert re.search(
        r"hop al -> xk: node-to-node msg/s \(approval to receipt\): [0-9.]+ "
        r"\(2 of 2 received, 0 not received, 0 duplicated, 0 dead-lettered at the origin\)",
        out,
    ), out
    assert re.search(
        r"hop added latency \(origin approval -> destination receipt\): p50 [0-9.]+ ms, p99 [0-9.]+ ms", out
    ), out
    assert "single node (2026-01-02T03:04:05+00:00): accepted msg/s at concurrency 4: 81 (p99 80.4 ms)" in out
