"""A worker's own metrics port (``broker.ops.server``): the same admission rule as the API, /metrics only."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import httpx
import pytest
from pydantic import SecretStr

from broker.config import Settings
from broker.errors import InvalidInput
from broker.launcher import free_port
from broker.ops import server
from broker.ops.metrics import MULTIPROC_ENV, count_deliveries

TOKEN = "a-worker-metrics-token"


def _get(settings: Settings, path: str, **environ: str) -> tuple[str, dict[str, str], bytes]:
    env: dict[str, Any] = {"PATH_INFO": path, **environ}
    setup_testing_defaults(env)
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"], answer["headers"] = status, dict(headers)

    body: Iterable[bytes] = server.metrics_app(settings)(env, start_response)
    return answer["status"], answer["headers"], b"".join(body)


def test_the_port_serves_this_process_counters_to_allowed_callers() -> None:
    settings = Settings(environment="test", metrics_token=SecretStr(TOKEN))
    count_deliveries("push", {"retry": 1, "dead": 1, "unknown-result": 5})
    status, headers, body = _get(settings, "/metrics", REMOTE_ADDR="127.0.0.1")
    assert status == "200 OK"
    assert headers["Content-Type"].startswith("text/plain")
    assert b'spoc_deliveries_total{channel="push",outcome="dead_lettered"}' in body
    assert b"spoc_messages" not in body  # the node's state is the API's to read
    assert _get(settings, "/metrics", REMOTE_ADDR="192.0.2.1")[0].startswith("403")
    ok = _get(settings, "/metrics", REMOTE_ADDR="192.0.2.1", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert ok[0] == "200 OK"
    missing = _get(settings, "/", REMOTE_ADDR="127.0.0.1")
    assert missing[0].startswith("404")
    assert missing[1]["Content-Type"] == "application/problem+json"


def test_the_port_needs_a_shared_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with pytest.raises(InvalidInput, match=MULTIPROC_ENV):
        server.serve(Settings(environment="test", worker_metrics_port=1))


def test_a_silent_caller_is_dropped_not_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A caller that connects and sends nothing gets its connection closed after the handler's timeout
    (shortened here so the test does not wait 10 s), and the port still serves the next scrape."""
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    monkeypatch.setattr(server._Quiet, "timeout", 0.5)
    port = free_port()
    running = server.serve(Settings(environment="test", worker_metrics_port=port))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
            started = time.monotonic()
            assert silent.recv(1024) == b""  # closed by the server, not by our own 5 s timeout
            assert time.monotonic() - started < 4
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert answer.status_code == 200
    finally:
        running.shutdown()
        running.server_close()
