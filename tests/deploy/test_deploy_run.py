"""``spoc run`` (what ``make run`` starts) leaves nothing behind when it is stopped by a service manager."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from broker.launcher import free_port


def _running(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return found.stdout.split()


def test_sigterm_stops_the_api_and_the_worker(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "SPOC_DATA_DIR": str(tmp_path)}
    env.pop("SPOC_DATABASE_URL", None)
    env.pop("SPOC_BROKER_URL", None)
    spoc = Path(sys.executable).parent / "spoc"
    proc = subprocess.Popen(
        [str(spoc), "run", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise AssertionError("spoc run did not answer within 90 s")
        assert _running(f"spoc-{port}@"), "the worker should be running"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert _running(f"--port {port} ") == []  # the API
        assert _running(f"spoc-{port}@") == []  # the worker and its pool
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _running(f"--port {port} ") + _running(f"spoc-{port}@"):  # a failed run's orphans
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
