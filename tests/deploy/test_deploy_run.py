"""``spoc run`` (what ``make run`` starts), through the installed command as a newcomer meets it: a region of
separate nodes (XK, AL, MK, BA) on free ports, each its own API and worker, SQLite database and folder. Every
printed URL answers, every node serves the signed directory listing them all, demo work waits in the queues
across nodes, ``spoc demo --url`` runs the scenario on the running region, a SIGTERM (a service manager)
stops every process of every node, and a second start reuses the folders (same accounts, same directory)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from broker.client.officer import OfficerClient
from broker.launcher import free_ports

SPOC = Path(sys.executable).parent / "spoc"
COUNTRIES = ["XK", "AL", "MK", "BA"]


def _running(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True, check=False)
    return found.stdout.split()


def _patterns(port: int) -> list[str]:
    """What identifies each node's API (``--port P``) and worker (``spoc-P@``) in the process list."""
    return [p for n in range(len(COUNTRIES)) for p in (f"--port {port + n} ", f"spoc-{port + n}@")]


@contextlib.contextmanager
def _spoc_run(data_dir: Path, port: int, *flags: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``spoc run`` until it says "Press Ctrl-C"; stopped (SIGTERM) and checked for leftovers after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")} | {
        "SPOC_DATA_DIR": str(data_dir)
    }
    env["SPOC_PUSH_ALLOWED_NETWORKS"] = "127.0.0.1/32"  # what `make run` sets
    proc = subprocess.Popen(
        [str(SPOC), "run", "--port", str(port), *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while not any("Press Ctrl-C" in line for line in output):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError("spoc run did not start:\n" + "".join(output))
            with contextlib.suppress(queue.Empty):
                output.append(lines.get(timeout=0.5))
        yield proc, output
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pattern in _patterns(port):  # a failed run's orphans
            for pid in _running(pattern):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        stdout.close()


def _passwords(output: list[str]) -> list[str]:
    return [line.split()[1] for line in output if re.match(r"\s+[a-z]{2}-officer\s", line)]


def test_make_run_starts_a_region_of_separate_nodes_and_sigterm_stops_them_all(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    port = free_ports(len(COUNTRIES))
    with _spoc_run(data_dir, port) as (proc, output):
        urls = re.findall(r"(http://127\.0\.0\.1:\d+)/ui", "".join(output))
        assert urls == [f"http://127.0.0.1:{port + n}" for n in range(len(COUNTRIES))]
        for country, url in zip(COUNTRIES, urls, strict=True):
            assert httpx.get(f"{url}/ui", follow_redirects=True, timeout=10).status_code == 200
            signed = httpx.get(f"{url}/v1/region/directory", timeout=10).json()
            listed = {
                n["base_url"]: [cp["country"] for cp in n["contact_points"]]
                for n in signed["directory"]["nodes"]
            }
            assert listed == {u: [c] for c, u in zip(COUNTRIES, urls, strict=True)}, country
        for pattern in _patterns(port):
            assert _running(pattern), f"{pattern} should be running"

        # Demo work waits on the nodes, made across them: AL's inbound review holds requests that XK's and
        # MK's nodes hopped to it, and a dead letter (routed to AL-CUS, whose push endpoint does not resolve).
        accounts = json.loads((data_dir / "region" / "al" / "demo-accounts.json").read_text())
        with OfficerClient(urls[1], "al-officer2", accounts["al-officer2"]["password"]) as al:
            inbound = al._call("GET", "/v1/cp/queues/inbound")
            outbound = al._call("GET", "/v1/cp/queues/outbound?status=all")
            dead = al._call("GET", "/v1/cp/deliveries?status=dead")
        assert {m["origin_country"] for m in inbound if m["state"] == "destination_review"} >= {"XK", "MK"}
        assert any(m["state"] == "returned" for m in outbound)
        assert any(m["priority_level"] == "urgent" for m in outbound if m["state"] == "origin_review")
        assert [d["agency"] for d in dead] == ["AL-CUS"]
        # `spoc demo --url` on the running region: the other nodes found in the first one's directory.
        demo = subprocess.run(
            [str(SPOC), "demo", "--url", urls[0], "--data-dir", str(data_dir / "region")],
            env={k: v for k, v in os.environ.items() if not k.startswith("SPOC_")},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
        assert (
            demo.stdout.strip().splitlines()[-1].startswith("audit log verified: every node (XK, AL, MK, BA)")
        )
        first = _passwords(output)
        assert len(first) == len(COUNTRIES)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        for pattern in _patterns(port):
            assert _running(pattern) == [], f"{pattern} still running"

    region = data_dir / "region"
    assert sorted(p.name for p in region.iterdir()) == ["al", "ba", "governance", "mk", "xk"]
    assert (region / "governance" / "gov.key.json").exists()  # the governance key, outside every node
    for country in COUNTRIES:
        node = region / country.lower()
        assert {"spoc.db", "queue.db", "master.key", "anchor.jwks.json"} <= {p.name for p in node.iterdir()}
        assert not list(node.rglob("gov.key.json"))
    for path in [data_dir, *data_dir.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"

    # A second start reuses the folders: the same accounts, the same directory, nothing seeded again.
    with _spoc_run(data_dir, port, "--no-pending") as (_, again):
        assert _passwords(again) == first
        assert any("the regional directory, version 1, is installed" in line for line in again)
        assert not any("leaving demo work" in line for line in again)
