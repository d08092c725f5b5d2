"""The benchmark's CPU attribution: a busy process is charged to the role whose process tree it is in."""

from __future__ import annotations

import subprocess
import sys
import time

from broker.bench import cpu
from broker.bench.report import rows

BUSY = "import time\nend = time.process_time() + 1.0\nwhile time.process_time() < end:\n    pass\n"
WRAPPER = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {BUSY!r}], check=True)\n"


def test_a_grandchild_is_charged_to_its_root_and_a_reaped_child_to_the_load_generator() -> None:
    root = subprocess.Popen([sys.executable, "-c", WRAPPER + "import time\ntime.sleep(0.3)\n"])
    time.sleep(0.2)  # the grandchild has started: it is charged through its parent
    before = cpu.sample()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        snapshot = cpu.sample()
        children = [p for p, (_, parent, _) in snapshot.by_pid.items() if parent == root.pid]
        if children and snapshot.by_pid[children[0]][0] - before.by_pid.get(children[0], (0, 0, ""))[0] >= 30:
            break
        time.sleep(0.05)
    middle = cpu.sample()
    root.wait(10)
    subprocess.run([sys.executable, "-c", BUSY], check=True)
    after = cpu.sample()

    api = cpu.per_message(before, middle, roots={"api": root.pid}, messages=1)
    assert api.get("api", 0) >= 250, api  # ms: at least 0.3 s of the grandchild's 1 s so far
    ours = cpu.per_message(middle, after, roots={"api": root.pid}, messages=2)
    assert ours.get("load generator", 0) >= 250, ours  # 1 s over 2 messages


def test_no_messages_means_no_figures() -> None:
    snapshot = cpu.sample()
    assert cpu.per_message(snapshot, snapshot, roots={}, messages=0) == {}


def test_the_report_shows_the_cpu_shares_of_each_level() -> None:
    phase = {
        "concurrency": 4,
        "accepted_per_s": 49.0,
        "p50_ms": 60.0,
        "p99_ms": 130.0,
        "sent": 10,
        "errors": 0,
        "cpu_ms_per_accepted": {"api": 18.04, "load generator": 14.1, "redis": 0.04},
    }
    results = {
        "limits": {
            "ed25519_verify_raw_per_s": 1.0,
            "envelope_verify_per_s": 1.0,
            "jwe_open_per_s": 1.0,
            "postgres_single_row_commits_per_s": 1.0,
            "postgres_batched_rows_per_s": 1.0,
            "redis_round_trips_per_s": 1.0,
        },
        "submit": [phase],
    }
    found = dict(rows(results))
    assert found["CPU ms per accepted message at concurrency 4"] == "api 18.0, load generator 14.1"
