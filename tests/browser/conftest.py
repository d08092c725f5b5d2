"""Browser fixtures: the real app in a uvicorn process on the test database, and Debian's chromium.

* ``live_server`` (session): the base URL of ``uvicorn contact_points.app:create_app`` started with the
  test settings (same PostgreSQL database, master key and data directory as the in-process app).
* ``browser_page`` (per test): a fresh Playwright page (own cookies) with ``base_url`` set to the live
  server and a laptop-sized viewport. Any request to another origin is aborted and fails the test: the
  UI must work on closed networks (no CDN, no external fonts).

Chromium is Debian's (``/usr/bin/chromium``); Playwright's own browser download is never used.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.config import Settings
from broker.launcher import free_port
from tests.factories import Region

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1366, "height": 860}


@contextlib.contextmanager
def uvicorn_app(env: dict[str, str], log: Path) -> Iterator[str]:
    """``uvicorn contact_points.app:create_app`` in its own process with ``env`` added to this one's, on a
    free port; its base URL once ``/health`` answers, the process stopped on exit (output in ``log``)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "contact_points.app:create_app", "--factory"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the API did not start: " + log.read_text()[-2000:])
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def live_server(
    settings: Settings, region: Region, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The base URL of a real uvicorn server running the whole app against the test database."""
    env = {
        "SPOC_ENVIRONMENT": "test",
        "SPOC_DATABASE_URL": settings.database_url,
        "SPOC_MASTER_KEY": settings.master_key_secret(),
        "SPOC_DATA_DIR": str(settings.data_dir),
    }
    with uvicorn_app(env, tmp_path_factory.mktemp("live-server") / "api.log") as url:
        yield url


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's chromium, headless, launched once per run."""
    if not CHROMIUM.exists():
        message = "Debian's chromium is not installed (apt-get install -y chromium; make test does it)"
        if os.environ.get("SPOC_REQUIRE_SERVICES") == "1":
            pytest.fail(message)  # CI: a missing browser is a failure, never a silent skip
        pytest.skip(message)
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium: Any, live_server: str) -> Iterator[Any]:
    """A fresh page (own cookies) on the live server; requests to any other origin fail the test."""
    context = chromium.new_context(base_url=live_server, viewport=VIEWPORT, locale="en-GB")
    context.set_default_timeout(10_000)
    outside: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(live_server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
    assert outside == [], f"the UI tried to load from outside spoc: {outside}"
