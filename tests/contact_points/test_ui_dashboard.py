"""The cooperation dashboard over HTTP, on the seeded 2025 traffic (tests/broker/stats/traffic.py): its charts
(inline SVG with titles and their numbers as text), the table behind each one, the region view, scope by
role (refusals audited), a bad period, and nothing loaded from elsewhere or styled inline (the CSP)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.audit.models import AuditEntry
from broker.db import unit_of_work
from tests.broker.stats.world import World, postgres_world
from tests.contact_points.test_ui_pages import log_in


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from postgres_world(tmp_path_factory.mktemp("stats-ui"))


@pytest.fixture(scope="module")
def http(world: World) -> Iterator[TestClient]:
    from contact_points.app import create_app

    with TestClient(create_app(world.settings)) as client:
        yield client


def _as(http: TestClient, world: World, username: str) -> None:
    log_in(http, username, world.region.password(username))


def _table(page: str, table_id: str) -> str:
    found = re.search(rf'<table id="{table_id}".*?</table>', page, re.S)
    assert found is not None, table_id
    return found.group(0)


def _row(table: str, header: str) -> list[str]:
    found = re.search(rf'<tr[^>]*><th scope="row">{re.escape(header)}</th>(.*?)</tr>', table, re.S)
    assert found is not None, header
    return re.findall(r'<td class="n">\s*([^<\s]+)', found.group(1))


def _audited(http: TestClient, action: str) -> list[AuditEntry]:
    with unit_of_work(http.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        rows = list(
            session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))
        )
        session.expunge_all()
    return rows


def test_a_supervisor_sees_the_charts_and_the_tables_behind_them(http: TestClient, world: World) -> None:
    _as(http, world, "hr-supervisor")
    answer = http.get("/ui/dashboard", params={"year": "2025"})
    assert answer.status_code == 200, answer.text[:500]
    page = answer.text
    assert '<a href="/ui/dashboard">Dashboard</a>' in page  # in the navigation
    for chart in ("volumes", "compliance-in", "compliance-out", "times", "grounds", "region"):
        svg = re.search(rf'<svg class="chart" id="chart-{chart}" role="img".*?</svg>', page, re.S)
        assert svg is not None, chart
        assert f'aria-labelledby="chart-{chart}-title chart-{chart}-desc"' in svg.group(0)
    assert page.count("<summary>Show table</summary>") == 6
    # the numbers are on the bars as text, each bar says what it is in its <title>, patterns are named
    compliance = re.search(r'<svg class="chart" id="chart-compliance-in".*?</svg>', page, re.S)
    assert compliance is not None
    assert "<title>SI: 1 answered within 8 h</title>" in compliance.group(0)
    assert "<title>AL: 2 refused</title>" in compliance.group(0)
    assert "answered late (cross-hatched)" in compliance.group(0)
    assert 'fill="url(#chart-compliance-in-late)"' in compliance.group(0)
    # the tables: received per month, compliance per country, answer times, grounds, open work
    assert _row(_table(page, "table-volumes"), "2025-06") == ["2", "0"]
    assert _row(_table(page, "table-compliance-in"), "SI") == [
        "1",
        "0",
        "2",
        "0",
        "1",
        "1",
        "0",
        "0",
        "0",
        "5",
    ]
    assert _row(_table(page, "table-compliance-in"), "RS") == [
        "0",
        "0",
        "1",
        "0",
        "0",
        "1",
        "0",
        "0",
        "1",
        "3",
    ]
    times = _table(page, "table-times-in")
    assert re.search(
        r'<th scope="row">All</th><td class="n">7</td><td class="n">4 d 0 h</td><td class="n">9 d 0 h</td>',
        times,
    )
    grounds = _table(page, "table-grounds-in")
    assert re.search(r"not-available</span></th><td class=\"n\">2</td>", grounds)
    assert _row(_table(page, "table-open-in"), "RS") == ["0", "1", "0"]
    assert _row(_table(page, "table-open-in"), "AL") == ["0", "0", "1"]
    # the region: every contact point of this node (a hub), this one marked
    region = _table(page, "table-region")
    assert re.search(
        r'<th scope="row">HR</th><td>this contact point</td><td class="n">13</td><td class="n">7</td>', region
    )
    assert len(re.findall(r'<th scope="row">[A-Z]{2}</th>', region)) == 8
    # exports of the same period, and nothing from elsewhere, nothing styled inline
    assert 'href="/v1/stats/art18?year=2025&amp;contact_point=HR-SPOC&amp;format=html"' in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "style=" not in page


def test_the_default_period_is_this_year(http: TestClient, world: World) -> None:
    _as(http, world, "hr-auditor")
    answer = http.get("/ui/dashboard")
    assert answer.status_code == 200
    assert "Cooperation dashboard of HR-SPOC" in answer.text
    assert re.search(r'name="year"[^>]*value="20\d\d"', answer.text)


def test_a_regional_auditor_chooses_the_contact_point(http: TestClient, world: World) -> None:
    _as(http, world, "regional-auditor")
    answer = http.get("/ui/dashboard", params={"year": "2025", "contact_point": "SI-SPOC"})
    assert answer.status_code == 200
    assert "Cooperation dashboard of SI-SPOC" in answer.text
    assert '<option value="HR-SPOC" >HR-SPOC</option>' in answer.text  # the others to choose from


def test_not_logged_in_goes_to_the_login_page(http: TestClient) -> None:
    http.cookies.clear()
    answer = http.get("/ui/dashboard", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=%2Fui%2Fdashboard"


def test_an_officer_is_refused_and_audited(http: TestClient, world: World) -> None:
    _as(http, world, "hr-officer")
    assert '<a href="/ui/dashboard">' not in http.get("/ui/queue").text
    before = len(_audited(http, "access:denied"))
    answer = http.get("/ui/dashboard", params={"year": "2025"})
    assert answer.status_code == 403
    assert "for supervisors and auditors" in answer.text
    denied = _audited(http, "access:denied")
    assert len(denied) == before + 1
    assert denied[-1].actor == "hr-officer"


def test_another_contact_point_is_refused_and_audited(http: TestClient, world: World) -> None:
    _as(http, world, "hr-supervisor")
    answer = http.get("/ui/dashboard", params={"year": "2025", "contact_point": "RS-SPOC"})
    assert answer.status_code == 403
    assert "<svg" not in answer.text
    refused = _audited(http, "stats:refused")[-1]
    assert (refused.actor, refused.object_id, sorted(refused.countries)) == (
        "hr-supervisor",
        "RS-SPOC",
        ["HR", "RS"],
    )


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"from": "2025-06-01", "to": "2025-01-01"}, "the period is reversed"),
        ({"from": "2025-06-01", "to": "2025-06-01"}, "the period is empty"),
        ({"year": "last year"}, "year must be four digits"),
    ],
)
def test_a_bad_period_is_said_and_nothing_computed(
    http: TestClient, world: World, params: dict[str, str], says: str
) -> None:
    _as(http, world, "hr-supervisor")
    answer = http.get("/ui/dashboard", params=params)
    assert answer.status_code == 422
    assert says in answer.text
    assert "<svg" not in answer.text
    assert 'action="/ui/dashboard"' in answer.text  # the forms, to try again


def test_a_quarter_is_shown_week_by_week(http: TestClient, world: World) -> None:
    _as(http, world, "hr-supervisor")
    answer = http.get("/ui/dashboard", params={"from": "2025-04-01", "to": "2025-07-01"})
    assert answer.status_code == 200
    volumes = _table(answer.text, "table-volumes")
    assert "Requests per week" in volumes
    assert _row(volumes, "2025-W23") == ["1", "0"]  # R6 (2 June)
    assert _row(volumes, "2025-W24") == ["1", "0"]  # R7 (10 June)


def test_a_very_long_period_is_shown_year_by_year_and_stays_small(http: TestClient, world: World) -> None:
    """The longest period the form takes (a thousand years) is drawn year by year: a page of bounded size,
    with no bar of negative width, and the 2025 requests in the row of 2025."""
    _as(http, world, "hr-supervisor")
    answer = http.get("/ui/dashboard", params={"from": "2000-01-01", "to": "2999-12-31"})
    assert answer.status_code == 200
    assert len(answer.text) < 1_000_000
    volumes = _table(answer.text, "table-volumes")
    assert "Requests per year" in volumes
    assert _row(volumes, "2999") == ["0", "0"]
    assert _row(volumes, "2025") != ["0", "0"]
    assert not re.search(r'width="-', answer.text)
    years = _table(
        http.get("/ui/dashboard", params={"from": "2023-01-01", "to": "2026-01-01"}).text, "table-volumes"
    )
    assert "Requests per month" in years, "three years are still shown month by month"
