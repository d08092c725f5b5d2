"""``GET /v1/stats/art18`` over HTTP: the exports (JSON and CSV parsed back, printable HTML), who may see
which contact point's figures (refusals answered 403 and audited), bad periods (422, nothing computed), and
the same figures coming out of a real flow through the API (agencies, officers, the outbox) as out of the
seeded rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from broker.audit.models import AuditEntry
from broker.client.agency import AgencyClient
from broker.db import unit_of_work
from tests.broker.stats.traffic import EXPECTED
from tests.broker.stats.world import World, postgres_world
from tests.factories import agency_client, deliver_request, drain, officer_client


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from postgres_world(tmp_path_factory.mktemp("stats-api"))


@pytest.fixture(scope="module")
def http(world: World) -> Iterator[TestClient]:
    from contact_points.app import create_app

    with TestClient(create_app(world.settings)) as client:
        yield client


def _headers(http: TestClient, world: World, username: str) -> dict[str, str]:
    password = world.region.password(username)
    answer = http.post("/v1/auth/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def _entries(http: TestClient, action: str) -> list[AuditEntry]:
    with unit_of_work(http.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        rows = list(
            session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))
        )
        session.expunge_all()
    return rows


def _count(http: TestClient, action: str) -> int:
    with unit_of_work(http.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        return int(session.scalar(select(func.count()).where(AuditEntry.action == action)) or 0)


def test_a_supervisor_exports_json_csv_and_a_printable_report(http: TestClient, world: World) -> None:
    headers = _headers(http, world, "hr-supervisor")
    answer = http.get("/v1/stats/art18", params={"year": "2025"}, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["content-disposition"] == 'attachment; filename="art18-HR-SPOC-2025.json"'
    report = answer.json()
    for figure in ("submitted", "received", "refused", "judicial_delays"):
        assert report[figure] == EXPECTED[figure], figure
    assert report["period"] == {"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "label": "2025"}

    answer = http.get("/v1/stats/art18", params={"year": "2025", "format": "csv"}, headers=headers)
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert {r["contact_point"] for r in rows} == {"HR-SPOC"}
    counts = {
        (r["figure"], r["requesting_country"], r["agency"], r["urgency"], r["ground"]): int(r["count"])
        for r in rows
    }
    expected = {
        ("a.submitted", "", "", "", ""): 6,
        ("a.submitted", "", "HR-SPOC", "", ""): 1,
        ("a.submitted.by_agencies", "", "", "", ""): 5,
        ("a.submitted", "", "HR-POL", "", ""): 3,
        ("b.received", "", "", "", ""): 13,
        ("b.answered", "", "", "", ""): 7,
        ("b.received", "", "", "urgent", ""): 4,
        ("b.answered", "", "", "non-urgent", ""): 4,
        ("b.received", "SI", "", "urgent", ""): 2,
        ("b.answered", "AL", "", "non-urgent", ""): 0,
        ("b.received", "RS", "", "", ""): 3,
        ("c.refused", "", "", "", ""): 4,
        ("c.refused", "AL", "", "", ""): 2,
        ("c.refused", "", "", "", "not-available"): 2,
        ("c.refused", "AL", "", "", "minor-offence"): 1,
        ("d.judicial_delays", "", "", "", ""): 2,
        ("d.judicial_delays", "SI", "", "", ""): 1,
    }
    assert {k: counts[k] for k in expected} == expected

    answer = http.get("/v1/stats/art18", params={"year": "2025", "format": "html"}, headers=headers)
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.headers["content-security-policy"].startswith("default-src 'none'; style-src 'sha256-")
    page = answer.text
    assert "(d) Time limits exceeded because a judicial authorisation had to be obtained" in page
    assert "A judicial authorisation required by national law was refused" in page  # the ground's label
    assert "<script" not in page
    assert "<link" not in page
    exports = [e.details["format"] for e in _entries(http, "stats:exported") if e.actor == "hr-supervisor"]
    assert exports[-3:] == ["json", "csv", "html"]


@pytest.mark.parametrize(
    ("username", "params", "status"),
    [
        ("hr-auditor", {}, 200),  # a national auditor: its country's contact point
        ("regional-auditor", {"contact_point": "SI-SPOC"}, 200),  # a regional auditor: any of this node's
        ("regional-auditor", {"contact_point": "me"}, 200),  # by country code too
        ("regional-auditor", {}, 400),  # several in scope: it must name one
        ("admin", {}, 403),
        ("hr-officer", {}, 403),
    ],
)
def test_who_sees_what(
    http: TestClient, world: World, username: str, params: dict[str, str], status: int
) -> None:
    answer = http.get(
        "/v1/stats/art18", params={"year": "2025", **params}, headers=_headers(http, world, username)
    )
    assert answer.status_code == status, answer.text


def test_an_officer_is_refused_and_the_refusal_audited(http: TestClient, world: World) -> None:
    before = _count(http, "access:denied")
    answer = http.get("/v1/stats/art18", params={"year": "2025"}, headers=_headers(http, world, "hr-officer"))
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("application/problem+json")
    denied = _entries(http, "access:denied")
    assert len(denied) == before + 1
    assert (denied[-1].actor, denied[-1].details["route"]) == ("hr-officer", "GET /v1/stats/art18")


@pytest.mark.parametrize(
    ("username", "asked", "countries"),
    [
        ("hr-supervisor", "SI-SPOC", ["HR", "SI"]),
        ("hr-auditor", "RS", ["HR", "RS"]),
        ("si-supervisor", "HR", ["HR", "SI"]),
    ],
)
def test_another_contact_points_figures_are_refused_and_audited(
    http: TestClient, world: World, username: str, asked: str, countries: list[str]
) -> None:
    exported = _count(http, "stats:exported")
    answer = http.get(
        "/v1/stats/art18",
        params={"year": "2025", "contact_point": asked},
        headers=_headers(http, world, username),
    )
    assert answer.status_code == 403
    assert "only" in answer.json()["detail"]
    refused = _entries(http, "stats:refused")[-1]
    assert (refused.actor, refused.object_id, refused.outcome) == (username, asked, "denied")
    assert refused.countries == countries
    assert refused.details["asked"] == asked
    assert refused.details["period"] == {"year": "2025"}
    assert _count(http, "stats:exported") == exported  # nothing computed, nothing exported


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"from": "2025-06-01", "to": "2025-01-01"}, "to"),  # reversed
        ({"from": "2025-06-01", "to": "2025-06-01"}, "to"),  # empty
        ({"from": "1 June", "to": "2025-07-01"}, "from"),  # unparseable
        ({"year": "MMXXV"}, "year"),
        ({"year": "2025", "from": "2025-01-01"}, "year"),
        ({}, "year"),
    ],
)
def test_a_bad_period_is_422_naming_the_parameter_and_nothing_is_computed(
    http: TestClient, world: World, params: dict[str, str], parameter: str
) -> None:
    exported = _count(http, "stats:exported")
    answer = http.get("/v1/stats/art18", params=params, headers=_headers(http, world, "hr-supervisor"))
    assert answer.status_code == 422
    problem = answer.json()
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert (problem["type"], problem["parameter"]) == ("urn:spoc:problem:invalid-period", parameter)
    assert _count(http, "stats:exported") == exported


def test_a_real_flow_counts_as_the_seeded_rows_do(http: TestClient, world: World) -> None:
    """Requests to HR over the API today: one answered, one refused, one extended awaiting a judge and then
    refused on that ground (within its time limit: Art. 18(d) does not count it)."""
    region = world.region
    answered_id, item = deliver_request(
        http, region, sender="AL-ASP", target="HR-POL", category="drug-trafficking"
    )
    police = agency_client(region, "HR-POL", http)
    police.submit(police.reply(police.open(item), payload=b'{"answer": "no record"}'))
    drain(http)

    def to_hr(sender: str) -> str:
        asker: AgencyClient = agency_client(region, sender, http)
        envelope = asker.build(payload=b'{"q": 1}', destination_country="HR", category="drug-trafficking")
        message_id: str = asker.submit(envelope)["message_id"]
        officer_client(region, f"{sender[:2].lower()}-officer", http).decide(message_id, "approve")
        drain(http)
        return message_id

    refused_id, judged_id = to_hr("SI-POL"), to_hr("RS-MUP")
    hr = officer_client(region, "hr-officer", http)
    hr.decide(refused_id, "refuse", refusal_ground="minor-offence", reason="a misdemeanour here")
    hr.decide(judged_id, "extend", extend_hours=72, extension_reason="judicial-authorisation-pending")
    hr.decide(judged_id, "refuse", refusal_ground="judicial-authorisation-refused")

    today = datetime.now(UTC).date().isoformat()
    params = {"from": today, "to": "2999-01-01"}
    report = http.get("/v1/stats/art18", params=params, headers=_headers(http, world, "hr-supervisor")).json()
    assert report["received"]["total"] == 3
    assert report["received"]["answered"] == 1
    assert {c["country"]: c["non_urgent_answered"] for c in report["received"]["by_requesting_country"]} == {
        "AL": 1,
        "RS": 0,
        "SI": 0,
    }
    assert report["refused"]["by_country_and_ground"] == [
        {"country": "RS", "ground": "judicial-authorisation-refused", "count": 1},
        {"country": "SI", "ground": "minor-offence", "count": 1},
    ]
    assert report["judicial_delays"]["total"] == 0  # extended, but refused within the 7 days
    al = http.get(
        "/v1/stats/art18",
        params={**params, "contact_point": "AL"},
        headers=_headers(http, world, "regional-auditor"),
    ).json()
    assert al["submitted"]["by_agency"] == [{"agency": "AL-ASP", "count": 1}]
    assert answered_id
