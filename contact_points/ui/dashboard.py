"""The cooperation dashboard (``/ui/dashboard``): a contact point's figures for supervisors and auditors.

Volumes over time, deadline compliance per counterpart, answer times (median and 90th percentile),
refusal grounds, open and overdue work, and the region country by country: this node's own contact points
and what the peer nodes publish as aggregate counts (``broker.stats.peers``; a peer that does not answer is
shown as unreachable, never an error of the page). Every figure comes from ``broker.stats.service``, scoped
by ``broker.stats.access`` exactly as ``GET /v1/stats/art18``: an officer or admin is refused (403, audited
``access:denied``), another contact point's figures are refused and audited ``stats:refused``. A bad period
is shown on the page (422) and nothing is computed. Charts are inline SVG (``contact_points.ui.charts``),
each with its table a click away.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from broker.db import utcnow
from broker.deps import DbSession, Keys
from broker.directory.models import ContactPoint
from broker.errors import NotPermitted
from broker.keys.service import DatabaseKeyStore
from broker.messages.deadlines import describe
from broker.stats.access import READERS, hosted, readable, resolve
from broker.stats.api import refusals_audited
from broker.stats.models import Aggregate
from broker.stats.peers import PeerCache, PeerFigures, prepare
from broker.stats.period import InvalidPeriod, Period, parse_period
from broker.stats.service import Dashboard, aggregate, aggregate_of, art18_judicial, dashboard
from contact_points.ui.charts import Bar, column_chart, grouped_bars, stacked_bars
from contact_points.ui.common import login_url, page, principal_or_none, templates
from schemas.codelists import label

router = APIRouter()

BUCKETS = (
    ("within_8h", "answered within 8 h"),
    ("within_3d", "answered within 3 d"),
    ("within_7d", "answered within 7 d"),
    ("on_time_extended", "answered on time after 7 d (extended)"),
    ("late", "answered late"),
    ("refused", "refused"),
    ("paused", "paused for clarification"),
    ("open", "open"),
    ("overdue", "overdue"),
)
WEEKLY_UP_TO = timedelta(days=92)
"""A period up to about a quarter is shown week by week; a longer one month by month."""
MONTHLY_UP_TO = timedelta(days=3 * 366)
"""A period up to about three years is shown month by month; a longer one (up to the thousand years a period
may span) year by year, so the chart and its table stay a few hundred bars at most."""

Text = Annotated[str | None, Query(max_length=40)]


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard_page(
    request: Request,
    session: DbSession,
    keys: Keys,
    year: Text = None,
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    contact_point: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    principal = principal_or_none(request, session)
    if principal is None:
        return RedirectResponse(login_url("/ui/dashboard"), status_code=303)
    user = principal.user
    if user.role not in READERS:
        raise NotPermitted("the cooperation dashboard is for supervisors and auditors")
    choices = readable(session, keys, user)
    form = {"year": year, "from": start, "to": end, "contact_point": contact_point}
    try:
        period = (
            Period.of_year(utcnow().year)
            if year is None and start is None and end is None
            else parse_period(year, start, end)
        )
    except InvalidPeriod as exc:
        refused: dict[str, Any] = {"error": exc.detail, "form": form, "choices": choices, "board": None}
        return page(request, principal, "dashboard.html", refused, status=exc.status)
    with refusals_audited(session, principal.actor(request), principal, period):
        asked = contact_point or (choices[0].id if len(choices) > 1 else None)
        cp = resolve(session, keys, user, asked)
    now = utcnow()
    board = dashboard(session, cp, period, now=now)
    region = _own_region(session, keys, cp, board, period, now=now)
    requests = prepare(session, keys, period)
    session.commit()  # nothing is held open while the peers are asked
    cache: PeerCache = request.app.state.peer_stats
    peers = cache.figures(requests) if requests else []
    context: dict[str, Any] = {
        "form": form,
        "choices": choices,
        "cp": cp,
        "board": board,
        **_context(board, period, now=now),
        **_region(region, peers, cp),
        "exports": _exports(cp, period),
        "period": period,
    }
    return page(request, principal, "dashboard.html", context)


def _own_region(
    session: Session,
    keys: DatabaseKeyStore,
    cp: ContactPoint,
    board: Dashboard,
    period: Period,
    *,
    now: datetime,
) -> list[Aggregate]:
    """The aggregates of this node's contact points (on a national node, its one; on a hub, every one: what
    each would publish to its peers), the one on display computed once."""
    rows = []
    for other in hosted(session, keys):
        if other.id == cp.id:
            rows.append(aggregate_of(board, judicial=art18_judicial(session, cp, period, now=now)))
        else:
            rows.append(aggregate(session, other, period, now=now))
    return rows


def _exports(cp: ContactPoint, period: Period) -> list[dict[str, str]]:
    query = {**period.query(), "contact_point": cp.id}
    return [
        {"format": fmt, "label": text, "href": "/v1/stats/art18?" + urlencode({**query, "format": fmt})}
        for fmt, text in (("html", "printable report"), ("csv", "CSV"), ("json", "JSON"))
    ]


def _duration(seconds: float | None) -> str:
    return "—" if seconds is None else describe(timedelta(seconds=round(seconds)))


templates.env.filters["duration"] = _duration


def _ground(code: str) -> str:
    try:
        return label("refusal_grounds", code)
    except ValueError:
        return code


def _unit(period: Period) -> str:
    span = period.end - period.start
    return "week" if span <= WEEKLY_UP_TO else "month" if span <= MONTHLY_UP_TO else "year"


def _week(day: date) -> str:
    iso = day.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def _month(day: date) -> str:
    return f"{day:%Y-%m}"


def _year(day: date) -> str:
    return f"{day:%Y}"


_KEYS: dict[str, Callable[[date], str]] = {"week": _week, "month": _month, "year": _year}


def _next_bucket(day: date, unit: str) -> date:
    """The first day of the bucket after ``day``'s (next Monday, first of next month, 1 January next)."""
    if unit == "week":
        return day + timedelta(days=7 - day.weekday())
    if unit == "month":
        return date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return date(day.year + 1, 1, 1)


def _buckets_of(period: Period) -> tuple[list[str], Any]:
    """The categories of the volumes chart (weeks, months or years of the period) and the day → category map,
    one step per category (never per day: a period may span a thousand years)."""
    unit = _unit(period)
    key = _KEYS[unit]
    first, last = period.start.date(), (period.end - timedelta(microseconds=1)).date()
    names: list[str] = []
    day = first
    while day <= last:
        names.append(key(day))
        day = _next_bucket(day, unit)
    return names, key


def _context(board: Dashboard, period: Period, *, now: datetime) -> dict[str, Any]:
    names, key = _buckets_of(period)
    volumes = {d: dict.fromkeys(names, 0) for d in ("in", "out")}
    for direction, days in board.days.items():
        for day, n in days.items():
            volumes[direction][key(day)] = volumes[direction].get(key(day), 0) + n
    volume_rows = [(name, volumes["in"][name], volumes["out"][name]) for name in names]
    unit = _unit(period)

    compliance = {
        d: [(country, board.compliance[d][country]) for country in sorted(board.compliance[d])]
        for d in ("in", "out")
    }
    times = {
        d: [(c, t) for c, t in board.times_by_counterpart[d].items()] + [("All", board.times[d])]
        for d in ("in", "out")
    }
    grounds = {d: sorted(board.grounds[d].items(), key=lambda kv: (-kv[1], kv[0])) for d in ("in", "out")}
    return {
        "tiles": [
            ("Received", board.requests("in")),
            ("Answered", sum(board.count("in", b) for b, _ in BUCKETS[:5])),
            ("Answered late", board.count("in", "late")),
            ("Refused", board.count("in", "refused")),
            ("Open", board.count("in", "open") + board.count("in", "overdue")),
            ("Overdue", board.count("in", "overdue")),
            ("Paused for clarification", board.count("in", "paused")),
            ("Sent (our requests)", board.requests("out")),
        ],
        "buckets": BUCKETS,
        "unit": unit,
        "volume_rows": volume_rows,
        "volume_chart": column_chart(
            chart_id="chart-volumes",
            title=f"Requests received and sent per {unit}, {period.label}",
            description="Bars per "
            + unit
            + ": requests received (solid) and requests sent (hatched), each with its number.",
            categories=[_short(n, unit) for n in names],
            series=[
                ("received", "Received", [r[1] for r in volume_rows]),
                ("sent", "Sent", [r[2] for r in volume_rows]),
            ],
        ),
        "compliance": compliance,
        "compliance_charts": {
            d: stacked_bars(
                chart_id=f"chart-compliance-{d}",
                title=title,
                description="One bar per country, split by how each request fared; the numbers are written on "
                "the bars and the patterns are named in the legend.",
                rows=compliance[d],
                buckets=BUCKETS,
            )
            for d, title in (
                ("in", "Deadline compliance of the requests we received, by requesting country"),
                ("out", "Deadline compliance of the requests we sent, by requested country"),
            )
        },
        "times": {
            d: [(c, t.count, _duration(t.median), _duration(t.p90)) for c, t in times[d]] for d in times
        },
        "times_chart": grouped_bars(
            chart_id="chart-times",
            title="Answer times of the requests we received, by requesting country (pauses excluded)",
            description="For each country the median (solid) and the 90th percentile (hatched) answer time.",
            legend=[("median", "median"), ("p90", "90th percentile")],
            rows=[
                (
                    c,
                    [
                        Bar("median", "median", t.median or 0, _duration(t.median)),
                        Bar("p90", "90th percentile", t.p90 or 0, _duration(t.p90)),
                    ],
                )
                for c, t in times["in"]
                if t.count
            ],
        ),
        "grounds": {d: [(code, _ground(code), n) for code, n in grounds[d]] for d in grounds},
        "grounds_chart": grouped_bars(
            chart_id="chart-grounds",
            title="Refusals we gave, by Art. 6 ground",
            description="One bar per ground of refusal with its number of refusals.",
            rows=[(_short_ground(code), [Bar("count", "refusals", n, str(n))]) for code, n in grounds["in"]],
        ),
        "open_rows": {
            d: [
                (c, counts.get("open", 0), counts.get("overdue", 0), counts.get("paused", 0))
                for c, counts in compliance[d]
                if counts.get("open", 0) + counts.get("overdue", 0) + counts.get("paused", 0)
            ]
            for d in ("in", "out")
        },
        "now": now,
    }


def _short(name: str, unit: str) -> str:
    if unit == "year":
        return name
    if unit == "month":
        return datetime.strptime(name, "%Y-%m").strftime("%b %y")
    return name.split("-", 1)[1]


def _short_ground(code: str) -> str:
    return code.replace("-", " ")


def _region(own: list[Aggregate], peers: list[PeerFigures], cp: ContactPoint) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [
        {
            "country": a.country,
            "source": "this contact point" if a.contact_point == cp.id else "this node",
            "row": a,
        }
        for a in own
    ]
    for peer in peers:
        if peer.status == "ok":
            rows += [{"country": a.country, "source": f"node {peer.node_id}", "row": a} for a in peer.rows]
        else:
            rows += [
                {"country": c, "source": f"node {peer.node_id}", "row": None, "detail": peer.detail}
                for c in peer.countries
            ]
    rows.sort(key=lambda r: r["country"])
    reached = [r for r in rows if r["row"] is not None]
    chart = grouped_bars(
        chart_id="chart-region",
        title="The region: requests each contact point received and sent",
        description="For each country the requests its contact point received (solid) and sent (hatched), "
        "as its node publishes them; countries whose node did not answer are in the table.",
        legend=[("received", "received"), ("sent", "sent")],
        rows=[
            (
                r["country"],
                [
                    Bar("received", "received", r["row"].received, str(r["row"].received)),
                    Bar("sent", "sent", r["row"].sent, str(r["row"].sent)),
                ],
            )
            for r in reached
        ],
    )
    return {"region": rows, "region_chart": chart, "unreachable": [p for p in peers if p.status != "ok"]}
