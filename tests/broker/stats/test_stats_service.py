"""Every Art. 18 figure and the dashboard's figures on a seeded year of traffic with known answers
(``traffic.py``), the same after the messages' content is deleted, and the period rules."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from broker.audit.service import SYSTEM
from broker.db import make_engine
from broker.directory.models import ContactPoint
from broker.messages.models import Message
from broker.retention.deletion import delete_content
from broker.stats.period import InvalidPeriod, Period, parse_period
from broker.stats.service import aggregate, art18, dashboard
from tests.broker.stats.traffic import ANSWER_SECONDS_IN, COMPLIANCE, EXPECTED, MEDIAN_IN, P90_IN, YEAR
from tests.broker.stats.world import World, postgres_world

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from postgres_world(tmp_path_factory.mktemp("stats-service"))


@pytest.fixture(scope="module")
def stats_engine(world: World) -> Iterator[Engine]:
    engine = make_engine(world.settings)
    yield engine
    engine.dispose()


@pytest.fixture
def session(stats_engine: Engine) -> Iterator[Session]:
    """Rolled back after each test: the content deletion below stays in its test."""
    connection = stats_engine.connect()
    transaction = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint")
    yield session
    session.close()
    transaction.rollback()
    connection.close()


def _hr(session: Session) -> ContactPoint:
    cp = session.get(ContactPoint, "HR-SPOC")
    assert cp is not None
    return cp


def _delete_content(session: Session) -> int:
    """Retention's irrevocable deletion (``broker.retention.deletion``) of every exchange of the year, as the
    sweep or a "delete now" review would do it: the messages keep their routing metadata only."""
    conversations = sorted(set(session.scalars(select(Message.conversation_id))))
    deleted = delete_content(session, conversations, basis="review", actor=SYSTEM)
    session.flush()
    session.expire_all()
    return deleted.messages


def test_every_art18_figure_of_a_seeded_year(session: Session) -> None:
    report = art18(session, _hr(session), Period.of_year(YEAR), now=NOW)
    got = report.model_dump(mode="json", by_alias=True)
    assert got["submitted"] == EXPECTED["submitted"]
    assert got["received"] == EXPECTED["received"]
    assert got["refused"] == EXPECTED["refused"]
    assert got["judicial_delays"] == EXPECTED["judicial_delays"]
    assert got["period"] == {"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "label": "2025"}
    assert (report.contact_point, report.country, report.format) == ("HR-SPOC", "HR", "spoc-art18/v1")


def test_the_same_figures_after_the_content_is_deleted(session: Session) -> None:
    before = art18(session, _hr(session), Period.of_year(YEAR), now=NOW)
    board_before = dashboard(session, _hr(session), Period.of_year(YEAR), now=NOW)
    assert _delete_content(session) > 30
    payloads = session.scalars(select(Message.envelope)).all()
    assert all("payload" not in envelope for envelope in payloads)
    assert session.scalar(select(func.count()).where(Message.content_deleted_at.is_(None))) == 0
    after = art18(session, _hr(session), Period.of_year(YEAR), now=NOW)
    assert after.model_dump(exclude={"generated_at"}) == before.model_dump(exclude={"generated_at"})
    assert dashboard(session, _hr(session), Period.of_year(YEAR), now=NOW) == board_before


def test_the_dashboard_figures(session: Session) -> None:
    board = dashboard(session, _hr(session), Period.of_year(YEAR), now=NOW)
    assert board.compliance == COMPLIANCE
    assert board.times["in"].count == len(ANSWER_SECONDS_IN)
    assert (board.times["in"].median, board.times["in"].p90) == (MEDIAN_IN, P90_IN)
    assert board.times_by_counterpart["in"]["SI"].count == 4  # R1 R2 R4 R5
    assert board.times_by_counterpart["in"]["SI"].median == (4 * 86400 + 4 * 86400) / 2  # 4 h, 4 d, 4 d, 9 d
    assert board.grounds["in"] == {
        "not-available": 2,
        "minor-offence": 1,
        "judicial-authorisation-refused": 1,
    }
    assert board.grounds["out"] == {"national-security-investigation-or-safety": 1}
    assert (board.count("in", "open"), board.count("in", "overdue"), board.count("in", "paused")) == (0, 1, 1)
    assert board.count("out", "overdue") == 2  # S4 (ME), S8 (SI)
    by_month_in = Counter[int]()
    for day, n in board.days["in"].items():
        by_month_in[day.month] += n
    assert sum(by_month_in.values()) == 13
    assert by_month_in[6] == 2
    assert by_month_in[11] == 2
    assert sorted(d.month for d in board.days["out"]) == [1, 3, 5, 8, 10, 12]
    assert min(board.days["in"]) == date(2025, 1, 10)


def test_the_aggregate_a_node_publishes(session: Session) -> None:
    row = aggregate(session, _hr(session), Period.of_year(YEAR), now=NOW)
    assert row.model_dump() == {
        "contact_point": "HR-SPOC",
        "country": "HR",
        "sent": 6,
        "received": 13,
        "answered": 7,
        "answered_late": 2,
        "refused": 4,
        "open": 1,
        "overdue": 1,
        "paused": 1,
        "judicial_delays": 2,
        "median_answer_seconds": MEDIAN_IN,
        "p90_answer_seconds": P90_IN,
    }


def test_another_contact_point_counts_only_its_own(session: Session) -> None:
    si = session.get(ContactPoint, "SI-SPOC")
    assert si is not None
    report = art18(session, si, Period.of_year(YEAR), now=NOW)
    assert report.submitted.total == 6  # R1-R5 to HR, O1 to AL; not X1 (2024), X2 (2026), X3, X4 (not sent)
    assert {a.agency: a.count for a in report.submitted.by_agency} == {"SI-POL": 4, "SI-DT": 2}
    assert (report.received.total, report.received.answered) == (3, 2)  # S1 S7 S8; S1 S7
    assert report.refused.total == 0
    assert report.judicial_delays.total == 0


@pytest.mark.parametrize(
    ("query", "period"),
    [
        (("2026", None, None), (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))),
        (
            (None, "2026-01-01", "2026-04-01"),
            (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
        ),
        (
            (None, "2026-03-01T10:00:00+02:00", "2026-03-02T00:00:00Z"),
            (datetime(2026, 3, 1, 8, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)),
        ),
    ],
)
def test_periods(query: tuple[str | None, str | None, str | None], period: tuple[datetime, datetime]) -> None:
    parsed = parse_period(*query)
    assert (parsed.start, parsed.end) == period


def test_a_period_label() -> None:
    assert parse_period(None, "2026-01-01", "2026-04-01").label == "2026-01-01 – 2026-03-31"
    assert parse_period("2026", None, None).query() == {"year": "2026"}
    assert parse_period(None, "2026-01-01", "2026-04-01").query() == {
        "from": "2026-01-01",
        "to": "2026-04-01",
    }


@pytest.mark.parametrize(
    ("query", "parameter", "words"),
    [
        ((None, None, None), "year", "give the period"),
        (("", None, None), "year", "empty"),
        (("26", None, None), "year", "four digits"),
        (("1999", None, None), "year", "four digits"),
        (("twenty", None, None), "year", "four digits"),
        (("2026", "2026-01-01", None), "year", "not both"),
        ((None, "2026-01-01", None), "to", "missing"),
        ((None, None, "2026-01-01"), "from", "missing"),
        ((None, "", "2026-01-01"), "from", "empty"),
        ((None, "2026-02-30", "2026-03-01"), "from", "not a date"),
        ((None, "yesterday", "2026-03-01"), "from", "not a date"),
        ((None, "2026-01-01", "2026-13-01"), "to", "not a date"),
        ((None, "2026-01-01T00:00:00", "2026-02-01"), "from", "time zone"),
        ((None, "2026-01-01", "2026-01-01"), "to", "empty"),
        ((None, "2026-03-01", "2026-01-01"), "to", "reversed"),
        ((None, "2026-01-01T12:00:00Z", "2026-01-01T11:59:59Z"), "to", "reversed"),
        ((None, "x" * 500, "2026-01-01"), "from", "not a date"),
    ],
)
def test_bad_periods_are_refused_naming_the_parameter(
    query: tuple[str | None, str | None, str | None], parameter: str, words: str
) -> None:
    with pytest.raises(InvalidPeriod) as caught:
        parse_period(*query)
    assert caught.value.status == 422
    assert caught.value.parameter == parameter
    assert words in caught.value.detail
    assert caught.value.problem()["parameter"] == parameter
