"""Art. 18 statistics and the cooperation dashboard's figures, from routing metadata and decisions only.

Every figure is read from the ``messages`` row's routing columns (type, countries, sender, priority, state,
deadline clock), the answers that name it (``in_reply_to``), its custody steps (a refusal and its Art. 6
ground) and its deadline events (an Art. 5(2) extension's code) — never from the envelope, so the figures
are the same after retention has deleted the content. docs/statistics.md defines each figure; this module
follows it, and its names are the doc's.

The work is set-based: :func:`requests` is one SQL subquery with one row per request of a contact point in
the period (its answer, refusal and judicial-authorisation extension looked up by correlated subqueries
on indexed columns), and each figure is a ``GROUP BY`` over it. Python only shapes the grouped rows and
takes percentiles of the answer times (SQLite has no percentile function). Functions read, never write.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Final

from sqlalchemy import (
    ColumnElement,
    Float,
    Subquery,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session, aliased

from broker.db import UTCDateTime
from broker.directory.models import ContactPoint
from broker.messages.models import CustodyStep, DeadlineEvent, Message
from broker.messages.states import State
from broker.stats.models import (
    AgencyCount,
    Aggregate,
    Art18Report,
    CountryCount,
    CountryGroundCount,
    GroundCount,
    Judicial,
    PeriodOut,
    Received,
    ReceivedByCountry,
    Refused,
    Submitted,
)
from broker.stats.period import Period

__all__ = [
    "BUCKETS",
    "SENT",
    "AnswerTimes",
    "Dashboard",
    "aggregate",
    "art18",
    "dashboard",
    "requests",
]

SENT: Final = frozenset(
    {
        State.FORWARDED,
        State.DESTINATION_REVIEW,
        State.ROUTED,
        State.DELIVERED,
        State.ANSWERED,
        State.REFUSED,
        State.CLARIFICATION_REQUESTED,
    }
)
"""A request in one of these states left its country: its contact point forwarded it, and (for the
requested contact point) it was received. Not: awaiting or stopped at outbound review, or superseded by its
amended version (which counts instead, so a request amended after a clarification counts once)."""

ANSWER_TYPES: Final = ("response", "acknowledgement")
"""The messages that answer a request (``in_reply_to``); a clarification does not."""

JUDICIAL_AUTHORISATION: Final = "judicial-authorisation-pending"
"""The ``deadline_extension_reasons`` code of Art. 5(2), what Art. 18(d) counts."""

HOUR: Final = 3600
LIMITS: Final = (("within_8h", 8 * HOUR), ("within_3d", 3 * 24 * HOUR), ("within_7d", 7 * 24 * HOUR))
BUCKETS: Final = (
    "within_8h",
    "within_3d",
    "within_7d",
    "on_time_extended",
    "late",
    "refused",
    "paused",
    "open",
    "overdue",
)
"""Where each request of the dashboard's compliance chart falls (one bucket each; docs/statistics.md)."""
ANSWERED_BUCKETS: Final = ("within_8h", "within_3d", "within_7d", "on_time_extended", "late")


# --- the one subquery ---------------------------------------------------------------------------------


def _seconds(
    dialect: str, later: ColumnElement[datetime], earlier: ColumnElement[datetime]
) -> ColumnElement[float]:
    """``later - earlier`` in seconds, as SQL (PostgreSQL: epochs; SQLite: Julian days)."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", later) - func.extract("epoch", earlier), Float)
    return cast((func.julianday(later) - func.julianday(earlier)) * 86400.0, Float)


def _day(dialect: str, at: ColumnElement[datetime]) -> ColumnElement[str]:
    """The UTC calendar day of ``at`` as ``YYYY-MM-DD``."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", at), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", at)


def requests(cp: ContactPoint, period: Period) -> Subquery:
    """One row per request that ``cp``'s country sent (``direction`` ``out``) or received (``in``), its
    clock started in ``period``: routing metadata, deadline clock, and when it was answered or refused, on
    which ground, and whether an Art. 5(2) judicial-authorisation extension was recorded."""
    answer = aliased(Message)
    answered_at = (
        select(func.min(answer.received_at))
        .where(answer.in_reply_to == Message.id, answer.type.in_(ANSWER_TYPES))
        .scalar_subquery()
    )
    refusal = (CustodyStep.message_id == Message.id) & (CustodyStep.to_state == State.REFUSED)
    refused_at = select(func.min(CustodyStep.at)).where(refusal).scalar_subquery()
    ground = select(func.max(CustodyStep.refusal_ground)).where(refusal).scalar_subquery()
    judicial = exists().where(
        DeadlineEvent.message_id == Message.id,
        DeadlineEvent.kind == "extended",
        DeadlineEvent.reason_code == JUDICIAL_AUTHORISATION,
    )
    started = func.coalesce(Message.clock_started_at, Message.received_at)
    outgoing = Message.origin_country == cp.country
    return (
        select(
            case((outgoing, literal("out")), else_=literal("in")).label("direction"),
            case((outgoing, Message.destination_country), else_=Message.origin_country).label("counterpart"),
            Message.sender_agency.label("sender"),
            case((Message.priority_level == "urgent", 1), else_=0).label("urgent"),
            Message.state.label("state"),
            started.label("started"),
            Message.deadline_at.label("deadline_at"),
            Message.paused_at.label("paused_at"),
            func.coalesce(Message.paused_seconds, 0).label("paused_seconds"),
            func.coalesce(Message.extended_seconds, 0).label("extended_seconds"),
            answered_at.label("answered_at"),
            refused_at.label("refused_at"),
            ground.label("ground"),
            case((judicial, 1), else_=0).label("judicial"),
        )
        .where(
            Message.type == "request",
            Message.state.in_(sorted(str(s) for s in SENT)),
            or_(outgoing, Message.destination_country == cp.country),
            started >= period.start,
            started < period.end,
        )
        .subquery("requests")
    )


@dataclass(frozen=True)
class _Measures:
    """The derived columns of :func:`requests`' rows (docs/statistics.md names each)."""

    answered: ColumnElement[bool]
    running: ColumnElement[float]  # answer time, pauses excluded (seconds)
    legal: ColumnElement[float]  # the Art. 5(1) period (seconds)
    judicial_exceeded: ColumnElement[bool]
    bucket: ColumnElement[str]


def _measures(r: Subquery, dialect: str, now: datetime) -> _Measures:
    c = r.c
    at_now = literal(now, UTCDateTime())
    answered = c.state == State.ANSWERED
    running = _seconds(dialect, c.answered_at, c.started) - c.paused_seconds
    legal = _seconds(dialect, c.deadline_at, c.started) - c.paused_seconds - c.extended_seconds
    until = func.coalesce(c.answered_at, c.refused_at, c.paused_at, at_now)
    judicial_exceeded = and_(c.judicial == 1, _seconds(dialect, until, c.started) - c.paused_seconds > legal)
    within = [(and_(answered, running <= limit), literal(name)) for name, limit in LIMITS]
    bucket = case(
        (c.state == State.REFUSED, literal("refused")),
        (and_(answered, c.answered_at > c.deadline_at), literal("late")),
        *within,
        (answered, literal("on_time_extended")),
        (c.state == State.CLARIFICATION_REQUESTED, literal("paused")),
        (c.deadline_at < at_now, literal("overdue")),
        else_=literal("open"),
    )
    return _Measures(answered, running, legal, judicial_exceeded, bucket)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


# --- Art. 18 --------------------------------------------------------------------------------------------


def art18(session: Session, cp: ContactPoint, period: Period, *, now: datetime) -> Art18Report:
    """The four figures of Art. 18 for ``cp`` over ``period`` (four grouped queries)."""
    r = requests(cp, period)
    m = _measures(r, _dialect(session), now)
    incoming = r.c.direction == "in"

    senders = session.execute(
        select(r.c.sender, func.count())
        .where(r.c.direction == "out")
        .group_by(r.c.sender)
        .order_by(r.c.sender)
    ).all()
    by_cp = sum(n for sender, n in senders if sender == cp.id)
    submitted = Submitted(
        total=sum(n for _, n in senders),
        by_contact_point=by_cp,
        by_agencies=sum(n for _, n in senders) - by_cp,
        by_agency=[AgencyCount(agency=sender, count=n) for sender, n in senders if sender != cp.id],
    )

    received_rows = session.execute(
        select(r.c.counterpart, r.c.urgent, func.count(), func.sum(case((m.answered, 1), else_=0)))
        .where(incoming)
        .group_by(r.c.counterpart, r.c.urgent)
    ).all()
    countries: dict[str, ReceivedByCountry] = {}
    for country, urgent, n, answered in received_rows:
        row = countries.setdefault(country, ReceivedByCountry(country=country))
        if urgent:
            row.urgent_received, row.urgent_answered = n, int(answered or 0)
        else:
            row.non_urgent_received, row.non_urgent_answered = n, int(answered or 0)
    by_country = [countries[c] for c in sorted(countries)]
    received = Received(
        total=sum(c.urgent_received + c.non_urgent_received for c in by_country),
        answered=sum(c.urgent_answered + c.non_urgent_answered for c in by_country),
        urgent_received=sum(c.urgent_received for c in by_country),
        urgent_answered=sum(c.urgent_answered for c in by_country),
        non_urgent_received=sum(c.non_urgent_received for c in by_country),
        non_urgent_answered=sum(c.non_urgent_answered for c in by_country),
        by_requesting_country=by_country,
    )

    refusal_rows = session.execute(
        select(r.c.counterpart, r.c.ground, func.count())
        .where(incoming, r.c.state == State.REFUSED)
        .group_by(r.c.counterpart, r.c.ground)
        .order_by(r.c.counterpart, r.c.ground)
    ).all()
    refused = Refused(
        total=sum(n for *_, n in refusal_rows),
        by_requesting_country=_totals((country, n) for country, _, n in refusal_rows),
        by_ground=[
            GroundCount(ground=g, count=n)
            for g, n in _sum_by((g or "unstated", n) for _, g, n in refusal_rows)
        ],
        by_country_and_ground=[
            CountryGroundCount(country=country, ground=ground or "unstated", count=n)
            for country, ground, n in refusal_rows
        ],
    )

    judicial_rows = session.execute(
        select(r.c.counterpart, func.count())
        .where(incoming, m.judicial_exceeded)
        .group_by(r.c.counterpart)
        .order_by(r.c.counterpart)
    ).all()
    judicial = Judicial(
        total=sum(n for _, n in judicial_rows),
        by_requesting_country=[CountryCount(country=c, count=n) for c, n in judicial_rows],
    )
    return Art18Report(
        contact_point=cp.id,
        country=cp.country,
        period=PeriodOut(start=period.start, end=period.end, label=period.label),
        generated_at=now,
        submitted=submitted,
        received=received,
        refused=refused,
        judicial_delays=judicial,
    )


def _sum_by(pairs: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    sums: dict[str, int] = defaultdict(int)
    for key, n in pairs:
        sums[key] += n
    return sorted(sums.items())


def _totals(pairs: Iterable[tuple[str, int]]) -> list[CountryCount]:
    return [CountryCount(country=k, count=n) for k, n in _sum_by(pairs)]


# --- the dashboard --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerTimes:
    """Answer times in seconds, pauses for clarification excluded: how many, the median and the 90th
    percentile (nearest rank), or None when nothing was answered."""

    count: int
    median: float | None
    p90: float | None

    @classmethod
    def of(cls, seconds: Iterable[float]) -> AnswerTimes:
        values = sorted(max(0.0, s) for s in seconds)
        if not values:
            return cls(0, None, None)
        return cls(len(values), statistics.median(values), values[math.ceil(0.9 * len(values)) - 1])


@dataclass(frozen=True)
class Dashboard:
    """What the dashboard shows for one contact point and period; ``in`` is what it answered (requests
    it received), ``out`` what its country asked (requests it sent). Counterparts are countries."""

    contact_point: str
    country: str
    period: Period
    days: dict[str, dict[date, int]]  # direction -> day -> requests whose clock started that day
    compliance: dict[str, dict[str, dict[str, int]]]  # direction -> counterpart -> bucket -> count
    times: dict[str, AnswerTimes]  # direction -> all counterparts
    times_by_counterpart: dict[str, dict[str, AnswerTimes]]  # direction -> counterpart -> times
    grounds: dict[str, dict[str, int]]  # direction -> Art. 6 ground -> refusals
    totals: dict[str, dict[str, int]] = field(default_factory=dict)  # direction -> bucket -> count

    def count(self, direction: str, bucket: str) -> int:
        return self.totals.get(direction, {}).get(bucket, 0)

    def requests(self, direction: str) -> int:
        return sum(self.totals.get(direction, {}).values())


def dashboard(session: Session, cp: ContactPoint, period: Period, *, now: datetime) -> Dashboard:
    """The dashboard's figures for ``cp`` over ``period`` (four grouped queries)."""
    dialect = _dialect(session)
    r = requests(cp, period)
    m = _measures(r, dialect, now)
    day = _day(dialect, r.c.started)

    days: dict[str, dict[date, int]] = {"in": {}, "out": {}}
    for direction, text, n in session.execute(
        select(r.c.direction, day, func.count()).group_by(r.c.direction, day)
    ).all():
        days[direction][date.fromisoformat(text)] = n

    compliance: dict[str, dict[str, dict[str, int]]] = {"in": {}, "out": {}}
    totals: dict[str, dict[str, int]] = {"in": defaultdict(int), "out": defaultdict(int)}
    for direction, counterpart, bucket, n in session.execute(
        select(r.c.direction, r.c.counterpart, m.bucket, func.count()).group_by(
            r.c.direction, r.c.counterpart, m.bucket
        )
    ).all():
        compliance[direction].setdefault(counterpart, {})[bucket] = n
        totals[direction][bucket] += n

    seconds: dict[str, dict[str, list[float]]] = {"in": defaultdict(list), "out": defaultdict(list)}
    for direction, counterpart, running in session.execute(
        select(r.c.direction, r.c.counterpart, m.running).where(m.answered, r.c.answered_at.is_not(None))
    ).all():
        seconds[direction][counterpart].append(float(running))

    grounds: dict[str, dict[str, int]] = {"in": {}, "out": {}}
    for direction, ground, n in session.execute(
        select(r.c.direction, r.c.ground, func.count())
        .where(r.c.state == State.REFUSED)
        .group_by(r.c.direction, r.c.ground)
    ).all():
        grounds[direction][ground or "unstated"] = n

    return Dashboard(
        contact_point=cp.id,
        country=cp.country,
        period=period,
        days=days,
        compliance=compliance,
        times={d: AnswerTimes.of(v for values in seconds[d].values() for v in values) for d in ("in", "out")},
        times_by_counterpart={
            d: {c: AnswerTimes.of(v) for c, v in sorted(seconds[d].items())} for d in ("in", "out")
        },
        grounds=grounds,
        totals={d: dict(t) for d, t in totals.items()},
    )


def aggregate(session: Session, cp: ContactPoint, period: Period, *, now: datetime) -> Aggregate:
    """``cp``'s aggregate counts over ``period``: what a node publishes to its peers (counts, no ids)."""
    board = dashboard(session, cp, period, now=now)
    return aggregate_of(board, judicial=art18_judicial(session, cp, period, now=now))


def art18_judicial(session: Session, cp: ContactPoint, period: Period, *, now: datetime) -> int:
    """Art. 18(d) alone: requests received whose time limit was exceeded awaiting a judicial authorisation."""
    r = requests(cp, period)
    m = _measures(r, _dialect(session), now)
    return int(session.scalar(select(func.count()).where(r.c.direction == "in", m.judicial_exceeded)) or 0)


def aggregate_of(board: Dashboard, *, judicial: int) -> Aggregate:
    incoming: Mapping[str, int] = board.totals.get("in", {})
    answered = sum(incoming.get(b, 0) for b in ANSWERED_BUCKETS)
    times = board.times["in"]
    return Aggregate(
        contact_point=board.contact_point,
        country=board.country,
        sent=board.requests("out"),
        received=board.requests("in"),
        answered=answered,
        answered_late=incoming.get("late", 0),
        refused=incoming.get("refused", 0),
        open=incoming.get("open", 0) + incoming.get("overdue", 0),
        overdue=incoming.get("overdue", 0),
        paused=incoming.get("paused", 0),
        judicial_delays=judicial,
        median_answer_seconds=None if times.median is None else round(times.median),
        p90_answer_seconds=None if times.p90 is None else round(times.p90),
    )
