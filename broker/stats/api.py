"""The statistics over HTTP: the Art. 18 report for this node's readers, the aggregates for its peers.

* ``GET /v1/stats/art18?year=2026`` (or ``from``/``to``; ``format=json|csv|html``; ``contact_point`` when the
  reader may see several) — supervisors and auditors, scoped by :mod:`broker.stats.access`. Each answer is
  an audit entry ``stats:exported``; a contact point outside the reader's scope is refused (403) and
  recorded as ``stats:refused``, naming what was asked. The period is checked first: an unparseable,
  empty or reversed one is 422 (``invalid-period``, ``parameter`` naming the input) and nothing is computed.
* ``GET /v1/stats/aggregate`` — a peer node of the regional directory (RFC 9421 ``spoc-node``), the signed
  aggregates of this node's own contact points (:mod:`broker.stats.peers`); audited ``stats:exported``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.db import utcnow
from broker.deps import DbSession, Keys, Principal, json_body, require
from broker.directory.models import ContactPoint
from broker.hop.api import CurrentPeer
from broker.hop.service import this_node
from broker.stats.access import READERS, StatsRefused, hosted, resolve
from broker.stats.export import HTML_CSP, MEDIA_TYPES, Format, as_csv, as_html, as_json, filename
from broker.stats.models import Art18Report
from broker.stats.peers import AGGREGATE_PATH, publish
from broker.stats.period import Period, parse_period
from broker.stats.service import aggregate, art18

__all__ = ["StatsReader", "exported", "refusals_audited", "render", "router"]

router = APIRouter(tags=["stats"])
StatsReader = Annotated[Principal, Depends(require(*READERS))]

Year = Annotated[
    str | None, Query(description="A calendar year (UTC), e.g. 2026. Or give `from` and `to` instead.")
]
From = Annotated[
    str | None, Query(alias="from", description="Start of the period: YYYY-MM-DD (midnight UTC) or RFC 3339")
]
To = Annotated[
    str | None, Query(alias="to", description="End of the period, not included: YYYY-MM-DD or RFC 3339")
]
ContactPointParam = Annotated[
    str | None,
    Query(
        max_length=32,
        description="The contact point (id or country code); needed only by a reader who sees several",
    ),
]


def _inlined(schema: dict[str, Any]) -> Any:
    """``schema`` with its ``$defs`` inlined, to stand alone in the OpenAPI document (as ``json_body`` does)."""
    return json_body(schema, "")["requestBody"]["content"]["application/json"]["schema"]


@contextlib.contextmanager
def refusals_audited(session: Session, actor: Actor, principal: Principal, period: Period) -> Iterator[None]:
    """A reader refused another contact point's figures: ``stats:refused`` (in its own transaction; the
    request's is rolled back), naming the contact point asked for, then the 403 (not again as ``access:denied``)."""
    try:
        yield
    except StatsRefused as exc:
        session.rollback()
        user = principal.user
        countries = set(
            session.scalars(select(ContactPoint.country).where(ContactPoint.id == user.contact_point_id))
        )
        asked = exc.asked.upper()
        countries |= set(
            session.scalars(
                select(ContactPoint.country).where(
                    (ContactPoint.id == asked) | (ContactPoint.country == asked)
                )
            )
        )
        if user.country:
            countries.add(user.country)
        record(
            session,
            actor=actor,
            action=AuditAction.STATS_REFUSED,
            object_type="contact-point",
            object_id=exc.asked or None,
            countries=countries,
            outcome="denied",
            details={
                "asked": exc.asked,
                "role": user.role,
                "own_contact_point": user.contact_point_id,
                "period": period.query(),
            },
        )
        session.commit()
        exc.audited = True
        raise


def exported(session: Session, actor: Actor, report: Art18Report, fmt: str, period: Period) -> None:
    record(
        session,
        actor=actor,
        action=AuditAction.STATS_EXPORTED,
        object_type="contact-point",
        object_id=report.contact_point,
        countries=[report.country],
        details={"report": "art18", "format": fmt, "period": period.query()},
    )


def render(report: Art18Report, fmt: Format, *, name: str) -> Response:
    """The report as the response of its format: JSON and CSV as downloads, HTML to read and print."""
    headers = {"Content-Disposition": f'attachment; filename="{filename(report, fmt)}"'}
    if fmt == "json":
        body = as_json(report)
    elif fmt == "csv":
        body = as_csv(report)
    else:
        body = as_html(report, contact_point_name=name)
        headers = {
            "Content-Disposition": f'inline; filename="{filename(report, fmt)}"',
            "Content-Security-Policy": HTML_CSP,
        }
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)


@router.get(
    "/v1/stats/art18",
    operation_id="stats_art18",
    responses={
        200: {
            "description": "The Art. 18 statistics (docs/statistics.md), as JSON, CSV or printable HTML",
            "content": {
                "application/json": {"schema": _inlined(Art18Report.model_json_schema(by_alias=True))},
                "text/csv": {"schema": {"type": "string"}},
                "text/html": {"schema": {"type": "string"}},
            },
        },
        422: {
            "description": "The period is unparseable, incomplete, empty or reversed (`parameter` names it)"
        },
    },
    response_class=Response,
)
def art18_report(
    request: Request,
    session: DbSession,
    keys: Keys,
    reader: StatsReader,
    year: Year = None,
    start: From = None,
    end: To = None,
    fmt: Annotated[Format, Query(alias="format", description="json, csv or html")] = "json",
    contact_point: ContactPointParam = None,
) -> Response:
    """Art. 18 statistics of one contact point for a year (or any period): requests submitted, received and
    answered (urgent / non-urgent, by requesting country), refused (by country and Art. 6 ground), and time
    limits exceeded awaiting a judicial authorisation. Computed from routing metadata and decisions only."""
    period = parse_period(year, start, end)
    actor = reader.actor(request)
    with refusals_audited(session, actor, reader, period):
        cp = resolve(session, keys, reader.user, contact_point)
    report = art18(session, cp, period, now=utcnow())
    exported(session, actor, report, fmt, period)
    return render(report, fmt, name=cp.name)


@router.get(AGGREGATE_PATH, operation_id="stats_aggregate_for_peer", responses={401: {}, 422: {}, 503: {}})
def aggregate_for_peer(
    session: DbSession,
    keys: Keys,
    peer: CurrentPeer,
    request: Request,
    year: Year = None,
    start: From = None,
    end: To = None,
) -> dict[str, Any]:
    """This node's own contact points' aggregate counts for the period, signed with its transport key, for a
    peer node of the regional directory (RFC 9421 ``spoc-node`` signature): counts only, no message ids."""
    period = parse_period(year, start, end)
    me = this_node(session, peer.directory)
    now = utcnow()
    rows = [aggregate(session, cp, period, now=now) for cp in hosted(session, keys)]
    record(
        session,
        actor=request.state.actor,
        action=AuditAction.STATS_EXPORTED,
        object_type="node",
        object_id=peer.node.node_id,
        countries=sorted({row.country for row in rows} | set(peer.node.countries)),
        details={
            "report": "aggregate",
            "period": period.query(),
            "contact_points": [r.contact_point for r in rows],
        },
    )
    return publish(keys, me=me, caller=peer.node, period=period, at=now, rows=rows)
