"""Refreshing the regional directory from peers and a distribution URL (issue 13), between two nodes that are
each their own API process and PostgreSQL database, through the installed ``spoc region refresh`` command.

A newer directory that one node has is picked up by the other; an older one is ignored; a fork (the installed
version with other content) served by a peer and a directory signed by a key that is not the anchor, served by
a distribution URL, are refused, audited and alerted, and nothing of them is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.bench.hop import Node, Region, region_of_two, signed_directory
from broker.config import Settings
from broker.crypto import KeyPair

SPOC = Path(sys.executable).parent / "spoc"


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Region]:
    del redis_url  # only to skip (or fail under SPOC_REQUIRE_SERVICES) when Redis is down
    with region_of_two(tmp_path_factory.mktemp("refresh"), redis_dbs=(9, 10)) as made:
        yield made


def _spoc(node: Node, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")} | node.env | (env or {})
    return subprocess.run(
        [str(SPOC), *args], env=full, capture_output=True, text=True, timeout=180, check=False
    )


def _install_over_http(node: Node, signed: dict[str, Any]) -> None:
    password = node.seed.accounts["admin"].password
    with httpx.Client(base_url=node.url, timeout=30) as http:
        token = http.post("/v1/auth/login", json={"username": "admin", "password": password}).json()["token"]
        answer = http.post("/v1/region/directory", json=signed, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text


def _version(node: Node) -> int:
    with node.connect() as conn:
        row = conn.execute("SELECT max(version) FROM region_directories").fetchone()
    assert row is not None
    return int(row[0])


def _count(node: Node, sql: str, *params: object) -> int:
    with node.connect() as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def test_a_newer_directory_is_installed_from_a_peer_and_an_older_one_ignored(region: Region) -> None:
    al, xk = region.nodes["AL"], region.nodes["XK"]
    _install_over_http(xk, region.sign(region.draft(version=2)))
    refused_before = _count(
        al, "SELECT count(*) FROM audit_entries WHERE action = 'region:directory-refused'"
    )

    ran = _spoc(al, "region", "refresh")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"{xk.url}/v1/region/directory: installed version 2" in ran.stdout
    assert _version(al) == 2
    again = _spoc(al, "region", "refresh")
    assert f"{xk.url}/v1/region/directory: same version 2" in again.stdout

    newer = region.sign(region.draft(version=3))
    (region.work_dir / "v3.json").write_text(json.dumps(newer))
    assert _spoc(al, "region", "install", str(region.work_dir / "v3.json")).returncode == 0
    ran = _spoc(al, "region", "refresh")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"{xk.url}/v1/region/directory: older version 2" in ran.stdout  # XK has not caught up: ignored
    assert _version(al) == 3
    assert _count(al, "SELECT count(*) FROM audit_entries WHERE action = 'region:directory-refused'") == (
        refused_before
    )


class _Serve(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture
def distribution() -> Iterator[tuple[str, type[_Serve]]]:
    """A distribution point on 127.0.0.1 serving whatever the test puts in ``body``."""
    handler = type("Handler", (_Serve,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/region.json", handler
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_fork_from_a_peer_and_a_wrong_signature_from_the_distribution_url_are_refused_and_alerted(
    region: Region, distribution: tuple[str, type[_Serve]]
) -> None:
    al, xk = region.nodes["AL"], region.nodes["XK"]
    ours = region.sign(region.draft(version=10))
    (region.work_dir / "v10.json").write_text(json.dumps(ours))
    assert _spoc(al, "region", "install", str(region.work_dir / "v10.json")).returncode == 0
    fork = region.sign(region.draft(version=10, valid_for=timedelta(days=20)))  # same version, other content
    _install_over_http(xk, fork)  # XK never had a version 10: it takes this one
    url, handler = distribution
    forged = signed_directory(region.draft(version=11), KeyPair.generate("sig"))  # not the governance key
    handler.body = json.dumps(forged).encode()

    ran = _spoc(al, "region", "refresh", env={"SPOC_REGION_DIRECTORY_URL": url})
    assert ran.returncode == 2, ran.stdout + ran.stderr
    lines = ran.stdout.splitlines()
    assert any(
        line.startswith(f"{xk.url}/v1/region/directory: refused version 10 [directory-fork] (alert")
        for line in lines
    )
    assert any(line.startswith(f"{url}: refused version 11 [directory-signature] (alert") for line in lines)
    assert _version(al) == 10
    with al.connect() as conn:
        installed = conn.execute("SELECT signed FROM region_directories WHERE version = 10").fetchone()
        alerts = {r[0] for r in conn.execute("SELECT kind FROM audit_alerts").fetchall()}
        reasons = [
            r[0]
            for r in conn.execute(
                "SELECT details->>'reason' FROM audit_entries WHERE action = 'region:directory-refused'"
            ).fetchall()
        ]
    assert installed is not None
    assert installed[0]["directory"]["valid_until"] == ours["directory"]["valid_until"]  # ours, not the fork
    assert {"directory-fork", "directory-signature"} <= alerts
    assert {"directory-fork", "directory-signature"} <= set(reasons)

    again = _spoc(al, "region", "refresh", env={"SPOC_REGION_DIRECTORY_URL": url})
    assert again.returncode == 2
    assert _count(al, "SELECT count(*) FROM audit_alerts WHERE kind = 'directory-fork'") == 1  # not again


def test_the_beat_refreshes_the_directory(tmp_path: Path) -> None:
    import workers.region_tasks  # noqa: F401 - registers the task
    from workers.celery_app import app, create_celery

    schedule = create_celery(Settings(data_dir=tmp_path, region_refresh_seconds=300)).conf.beat_schedule
    assert schedule["region-refresh"]["task"] == "spoc.region.refresh"
    assert schedule["region-refresh"]["schedule"] == 300
    assert "spoc.region.refresh" in app.tasks
