"""The auditors' pages in a real browser: log in, land on the search, filter, follow an exchange's timeline,
sign a checkpoint, download a bundle that verifies offline; a national auditor never sees another country.

Runs Debian's chromium (no downloaded browser) against a real uvicorn process on the test database.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import playwright.sync_api as playwright_sync
import pytest
from sqlalchemy import Engine

from broker.audit.actions import AuditAction
from broker.audit.bundle import verify_bundle
from broker.audit.service import Actor, record, sequence_all
from broker.config import Settings
from broker.db import make_sessionmaker, unit_of_work
from broker.launcher import free_port
from tests.factories import Region

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(  # outside CI only: with SPOC_REQUIRE_SERVICES=1 a missing browser fails the run
        not CHROMIUM.exists() and os.environ.get("SPOC_REQUIRE_SERVICES") != "1",
        reason="Debian's chromium is not installed (apt-get install chromium)",
    ),
]


@pytest.fixture(scope="module")
def audit_server(
    settings: Settings, region: Region, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("audit-ui") / "api.log"
    env = {
        **os.environ,
        "SPOC_ENVIRONMENT": "test",
        "SPOC_DATABASE_URL": settings.database_url,
        "SPOC_MASTER_KEY": settings.master_key_secret(),
        "SPOC_DATA_DIR": str(settings.data_dir),
    }
    command = [sys.executable, "-m", "uvicorn", "contact_points.app:create_app", "--factory"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
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
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def exchange(engine: Engine) -> tuple[str, str]:
    """An actor tag and a message id with committed, sequenced entries: an AL→RS exchange and an XK one."""
    tag, message = f"ui-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    with unit_of_work(make_sessionmaker(engine)) as session:
        actor = Actor(tag, "agency")
        for action in (
            AuditAction.MESSAGE_SUBMITTED,
            AuditAction.MESSAGE_QUEUED,
            AuditAction.MESSAGE_APPROVED,
        ):
            record(
                session,
                actor=actor,
                action=action,
                object_type="message",
                object_id=message,
                countries=["AL", "RS"],
            )
        record(
            session,
            actor=actor,
            action=AuditAction.MESSAGE_SUBMITTED,
            object_type="message",
            object_id=f"{tag}-xk",
            countries=["XK"],
        )
        sequence_all(session)
    return tag, message


def log_in(browser: object, url: str, region: Region, username: str):  # type: ignore[no-untyped-def]  # playwright Page
    context = browser.new_context(accept_downloads=True)  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{url}/ui/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(region.password(username))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/ui/audit")  # /ui/queue sends auditors to their pages
    return page


def test_a_national_auditor_searches_follows_an_exchange_and_exports_a_verifiable_bundle(
    audit_server: str, browser: object, region: Region, exchange: tuple[str, str], tmp_path: Path
) -> None:
    tag, message = exchange
    page = log_in(browser, audit_server, region, "al-auditor")
    assert page.get_by_role("heading", name="Audit log").is_visible()
    assert "entries touching AL" in page.locator("p.notice").first.inner_text()

    page.get_by_label("Actor").fill(tag)
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(f"**actor={tag}**")
    rows = page.locator("#audit-results tbody tr")
    assert rows.count() == 3  # the XK entry is out of AL's scope
    assert all("AL" in rows.nth(i).inner_text() for i in range(3))

    page.get_by_label("Action").select_option("message:approved")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**action=message%3Aapproved**")
    assert page.locator("#audit-results tbody tr").count() == 1

    page.get_by_role("link", name=message).first.click()
    page.wait_for_url(f"**/ui/audit/messages/{message}")
    timeline = page.locator("#timeline tbody tr")
    assert timeline.count() == 3
    assert [timeline.nth(i).locator("td").nth(2).inner_text() for i in range(3)] == [
        "message:submitted",
        "message:queued",
        "message:approved",
    ]

    page.get_by_role("link", name="Checkpoints and witnesses").click()
    page.get_by_role("button", name="Sign a checkpoint now").click()
    assert page.get_by_role("status").inner_text() in (
        "A new checkpoint was signed.",
        "The log has not grown since the latest checkpoint.",
    )
    assert page.locator("#latest-note").inner_text().startswith("spoc/audit-log\n")

    page.goto(f"{audit_server}/ui/audit/messages/{message}")
    assert page.locator("#timeline").inner_text().count("✓ proven") == 3

    with page.expect_download() as download:
        page.get_by_role("link", name="export this exchange").click()
    path = tmp_path / "bundle.json"
    download.value.save_as(path)
    bundle = json.loads(path.read_text())
    assert bundle["scope"] == "AL"
    assert {e["entry"]["object_id"] for e in bundle["entries"]} == {message}
    report = verify_bundle(bundle)
    assert report.ok, report.line()

    # Another country's exchange is not found, in AL's scope.
    page.goto(f"{audit_server}/ui/audit/messages/{tag}-xk")
    assert "no audit entries about this message in your scope" in page.locator("p.error").inner_text()
    page.context.close()


def test_the_regional_auditor_sees_every_country(
    audit_server: str, browser: object, region: Region, exchange: tuple[str, str]
) -> None:
    tag, _ = exchange
    page = log_in(browser, audit_server, region, "regional-auditor")
    assert "all countries" in page.locator("p.notice").first.inner_text()
    page.goto(f"{audit_server}/ui/audit?actor={tag}")
    assert page.locator("#audit-results tbody tr").count() == 4
    page.get_by_label("Country").select_option("XK")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**country=XK**")
    assert page.locator("#audit-results tbody tr").count() == 1
    page.context.close()


def test_officers_are_kept_out(audit_server: str, browser: object, region: Region) -> None:
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{audit_server}/ui/audit")
    page.wait_for_url("**/ui/login")
    page.get_by_label("Username").fill("al-officer")
    page.get_by_label("Password").fill(region.password("al-officer"))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ui/queue")
    response = page.goto(f"{audit_server}/ui/audit")
    assert response is not None
    assert response.status == 403
    assert "Only auditors read the audit log." in page.locator("p.error").inner_text()
    context.close()
