"""The auditors' timeline fits a 1366 px laptop screen: long ids and digests wrap inside their cells instead
of pushing the page sideways (Debian's chromium, a real uvicorn server, the test database). The page is
saved as docs/screenshots/audit-timeline.png when screenshots are refreshed (see test_browser_review)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
from sqlalchemy import Engine

from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record, sequence_all
from broker.db import make_sessionmaker, unit_of_work
from tests.browser.test_browser_review import SCREENSHOTS
from tests.factories import Region

pytestmark = pytest.mark.browser


def _exchange_with_long_values(engine: Engine) -> str:
    """An AL→RS exchange whose entries carry what real ones do: digests, key thumbprints, receipt ids."""
    message = str(uuid.uuid4())
    digest = "sha-256:" + hashlib.sha256(message.encode()).hexdigest()
    kid = hashlib.sha256(b"kid" + message.encode()).hexdigest()[:43]
    with unit_of_work(make_sessionmaker(engine)) as session:
        for action in (
            AuditAction.MESSAGE_SUBMITTED,
            AuditAction.MESSAGE_QUEUED,
            AuditAction.MESSAGE_APPROVED,
        ):
            record(
                session,
                actor=Actor("AL-ASP", "agency"),
                action=action,
                object_type="message",
                object_id=message,
                countries=["AL", "RS"],
                details={
                    "digest": digest,
                    "kid": kid,
                    "receipt": f"{digest}.{kid}.{uuid.uuid4()}",
                    "conversation_id": str(uuid.uuid4()),
                },
            )
        sequence_all(session)
    return message


def test_the_timeline_fits_a_1366_px_screen(
    browser_page: Any, live_server: str, region: Region, engine: Engine
) -> None:
    message = _exchange_with_long_values(engine)
    page = browser_page
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto("/ui/login")
    page.get_by_label("Username").fill("al-auditor")
    page.get_by_label("Password").fill(region.password("al-auditor"))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ui/audit")
    page.goto(f"/ui/audit/messages/{message}")
    assert page.locator("#timeline tbody tr").count() == 3
    assert page.locator("#timeline").inner_text().count("sha-256:") == 6  # the long values are all shown
    page.screenshot(path=str(SCREENSHOTS / "audit-timeline.png"), full_page=True)
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px window"
