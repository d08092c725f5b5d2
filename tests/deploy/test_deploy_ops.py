"""``spoc run`` as the newcomer meets it (``make run``): the installed command as a subprocess.

A port already in use is said in one line before anything starts; a fresh data folder gets work waiting
in the queues (seen over HTTP as an officer); every file spoc writes there is private whatever the umask.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.client.officer import OfficerClient
from broker.launcher import free_port

SPOC = Path(sys.executable).parent / "spoc"


def _env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "SPOC_DATA_DIR": str(data_dir)}
    for key in ("SPOC_DATABASE_URL", "SPOC_BROKER_URL", "SPOC_MASTER_KEY", "SPOC_PUSH_ALLOWED_NETWORKS"):
        env.pop(key, None)
    return env


def _loose_umask() -> None:
    os.umask(0o022)  # a common default: files 0644, folders 0755 unless spoc sets them itself


def test_run_on_a_port_in_use_says_so_and_exits_before_starting(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            [str(SPOC), "run", "--port", str(port)],
            env=_env(tmp_path / "data"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode != 0
    assert time.monotonic() - started < 20
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "--port" in done.stderr
    assert "Traceback" not in done.stderr
    assert "running" not in done.stdout
    assert "al-officer" not in done.stdout
    assert not (tmp_path / "data").exists()  # nothing created either


@dataclass
class Running:
    url: str
    data_dir: Path
    output: list[str]

    def password(self, username: str) -> str:
        accounts = json.loads((self.data_dir / "demo-accounts.json").read_text())
        return str(accounts[username]["password"])


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """``spoc run --hub`` (every contact point on one node) on a fresh data folder, under umask 022, until it
    prints its accounts. (The region of separate nodes, what plain ``spoc run`` starts: test_deploy_region.)"""
    data_dir = tmp_path_factory.mktemp("run") / "data"
    port = free_port()
    proc = subprocess.Popen(
        [str(SPOC), "run", "--hub", "--port", str(port)],
        env=_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_loose_umask,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while not any("Press Ctrl-C" in line for line in output):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError("spoc run did not start:\n" + "".join(output))
            with contextlib.suppress(queue.Empty):
                output.append(lines.get(timeout=0.5))
        yield Running(f"http://127.0.0.1:{port}", data_dir, output)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stdout.close()


def test_a_fresh_run_leaves_each_kind_of_work_in_the_queues(fresh_run: Running) -> None:
    with OfficerClient(fresh_run.url, "al-officer2", fresh_run.password("al-officer2")) as al:
        outbound = al._call("GET", "/v1/cp/queues/outbound?status=all")
        inbound = al._call("GET", "/v1/cp/queues/inbound")
        dead = al._call("GET", "/v1/cp/deliveries?status=dead")
        awaiting = [m for m in outbound if m["state"] == "origin_review"]
        assert any(m["priority_level"] == "urgent" and m["urgency_reason"] for m in awaiting)
        assert any("H3" in m["handling_codes"] for m in awaiting)
        assert any((m["deadline_used"] or 0) >= 0.75 and not m["overdue"] for m in awaiting)
        assert any(m["state"] == "returned" for m in outbound)
        [confidential] = [m for m in awaiting if m["classification"] == "CONFIDENTIAL"]
        detail = al._call("GET", f"/v1/cp/messages/{confidential['message_id']}")
        assert [(c["actor"], c["party"]) for c in detail["custody"] if c["party"] == "AL-SPOC"] == [
            ("al-officer2", "AL-SPOC")
        ]  # one approval given, the second (another officer) awaited
        assert {m["origin_country"] for m in inbound if m["state"] == "destination_review"} >= {"XK", "ME"}
        assert [d["agency"] for d in dead] == ["AL-CUS"]
        assert "does not resolve" in dead[0]["last_error"]


def test_every_file_in_the_data_folder_is_private(fresh_run: Running) -> None:
    data_dir = fresh_run.data_dir
    written = {p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*")}
    assert {"spoc.db", "queue.db", "master.key", "demo-accounts.json", "agencies/AL-ASP.json"} <= written
    for path in [data_dir, *data_dir.rglob("*")]:
        try:
            mode = stat.S_IMODE(path.lstat().st_mode)
        except FileNotFoundError:  # a SQLite journal the running spoc removed after the listing
            continue
        if path.is_dir():
            assert mode == 0o700, f"{path} is {oct(mode)}"
        else:
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def test_a_node_s_folder_is_never_run_as_another_country_s_and_the_region_refuses_a_shared_database(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path / "xk")
    seeded = subprocess.run(
        [str(SPOC), "seed", "--country", "XK"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stderr
    port = free_port()
    other = subprocess.run(
        [str(SPOC), "run", "--country", "AL", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert other.returncode == 1
    assert "holds the contact points of XK, not AL" in other.stderr
    assert "Traceback" not in other.stderr

    # The region gives each node its own database: one named in the environment would be shared by all.
    shared = subprocess.run(
        [str(SPOC), "run", "--port", str(port)],
        env=_env(tmp_path / "region") | {"SPOC_DATABASE_URL": "sqlite:////tmp/one.db"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shared.returncode == 1
    assert "SPOC_DATABASE_URL set" in shared.stderr
    assert "--country" in shared.stderr
    assert not (tmp_path / "region").exists()
