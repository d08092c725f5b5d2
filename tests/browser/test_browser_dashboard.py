"""A supervisor opens the cooperation dashboard in a real browser on a real server (its own database, seeded with
the 2025 traffic of tests/broker/stats/traffic.py), reads the charts and opens the table behind one.
Saved as docs/screenshots/dashboard.png and dashboard-table.png with SPOC_UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.broker.stats.world import World, postgres_world
from tests.browser.conftest import VIEWPORT, uvicorn_app
from tests.browser.test_browser_review import SCREENSHOTS

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from postgres_world(tmp_path_factory.mktemp("stats-browser"))


@pytest.fixture(scope="module")
def server(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The whole app in a uvicorn process on the world's database (as tests/browser/conftest.py's live_server)."""
    with uvicorn_app(world.env, tmp_path_factory.mktemp("stats-server") / "api.log") as url:
        yield url


@pytest.fixture
def page(chromium: Any, server: str) -> Iterator[Any]:
    """A fresh page on this module's server; a request to any other origin fails the test."""
    context = chromium.new_context(base_url=server, viewport=VIEWPORT, locale="en-GB")
    context.set_default_timeout(10_000)
    outside: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    try:
        yield context.new_page()
    finally:
        context.close()
    assert outside == [], f"the dashboard tried to load from outside spoc: {outside}"


def test_a_supervisor_reads_the_dashboard_and_opens_a_table(page: Any, world: World) -> None:
    page.goto("/ui/login")
    page.get_by_label("Username").fill("hr-supervisor")
    page.get_by_label("Password").fill(world.region.password("hr-supervisor"))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ui/queue")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    page.wait_for_url("**/ui/dashboard")
    page.get_by_role("textbox", name="Year").fill("2025")
    page.get_by_role("button", name="Show the year").click()
    page.wait_for_url("**/ui/dashboard?year=2025")

    assert page.get_by_role("heading", name="Cooperation dashboard of HR-SPOC").is_visible()
    compliance = page.get_by_role(
        "img", name="Deadline compliance of the requests we received, by requesting country"
    )
    assert compliance.is_visible()
    box = compliance.bounding_box()
    assert box is not None
    assert box["width"] > 600  # drawn at the page's width, not as a thumbnail
    assert "answered late (cross-hatched)" in (
        compliance.text_content() or ""
    )  # the legend names the pattern
    for name in ("Volumes over time", "Answer times", "Refusal grounds", "The region, country by country"):
        assert page.get_by_role("heading", name=name).is_visible()
    tiles = page.locator("ul.tiles").inner_text()
    assert "13\nReceived" in tiles or "13 Received" in tiles.replace("\n", " ")
    table = page.locator("#table-compliance-in")
    assert not table.is_visible()  # behind "Show table"
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

    section = page.locator(
        "section", has=page.get_by_role("heading", name="Deadline compliance: requests we answered")
    )
    section.get_by_text("Show table").click()
    assert table.is_visible()
    si = table.get_by_role("row", name="SI")
    assert si.get_by_role("cell").all_inner_texts() == ["1", "0", "2", "0", "1", "1", "0", "0", "0", "5"]
    section.screenshot(path=str(SCREENSHOTS / "dashboard-table.png"))

    # the printable Art. 18 report of the same period: styled by its own inline style, which its CSP allows
    page.get_by_role("link", name="printable report").click()
    page.wait_for_url("**/v1/stats/art18?year=2025&contact_point=HR-SPOC&format=html")
    report = page
    assert report.get_by_role(
        "heading", name="Statistics under Article 18 of Directive (EU) 2023/977"
    ).is_visible()
    assert report.evaluate("getComputedStyle(document.querySelector('table')).borderCollapse") == "collapse"
    assert report.get_by_role("row", name="Total 4 3 9 4 13 7").is_visible()  # (b): urgent, non-urgent, all
    report.screenshot(path=str(SCREENSHOTS / "art18-report.png"), full_page=True)
