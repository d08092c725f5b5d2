"""The Art. 18 report as a file: JSON (the document itself), CSV (one figure per row) and printable HTML.

CSV is "long": each row is one number with what it counts, so a spreadsheet pivots it any way and a
script reads it without knowing the layout::

    contact_point,from,to,figure,requesting_country,agency,urgency,ground,count
    HR-SPOC,2026-01-01,2027-01-01,b.received,SI,,urgent,,2

An empty breakdown column means "all"; ``figure`` is one of :data:`FIGURES` (docs/statistics.md);
``a.submitted`` with ``agency`` set is one sender's count (the contact point's own id: its own requests).

HTML is one self-contained page (its style inline, no script, nothing loaded from anywhere) laid out for
A4 paper: print it, or "print to PDF", and send it. Its Content-Security-Policy allows that one style
block by its hash (:data:`HTML_CSP`) and nothing else.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Literal

import jinja2

from broker.stats.models import Art18Report
from schemas.codelists import label

__all__ = [
    "FIGURES",
    "FORMATS",
    "HTML_CSP",
    "MEDIA_TYPES",
    "Format",
    "as_csv",
    "as_html",
    "as_json",
    "filename",
]

Format = Literal["json", "csv", "html"]
FORMATS: Final[tuple[Format, ...]] = ("json", "csv", "html")
MEDIA_TYPES: Final[dict[Format, str]] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
FIGURES: Final = (
    "a.submitted",
    "a.submitted.by_agencies",
    "b.received",
    "b.answered",
    "c.refused",
    "d.judicial_delays",
)
COLUMNS: Final = (
    "contact_point",
    "from",
    "to",
    "figure",
    "requesting_country",
    "agency",
    "urgency",
    "ground",
    "count",
)

_HERE = Path(__file__).parent
_CSS: Final = (_HERE / "templates" / "report.css").read_text(encoding="utf-8")
HTML_CSP: Final = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
    + "'; img-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _ground(code: str) -> str:
    try:
        return label("refusal_grounds", code)
    except ValueError:
        return code


_env.filters["ground"] = _ground


def as_json(report: Art18Report) -> bytes:
    return report.model_dump_json(by_alias=True, indent=2).encode()


def _rows(report: Art18Report) -> Iterator[tuple[str, str, str, str, str, str | int]]:
    """(figure, requesting_country, agency, urgency, ground, count) for every number of the report."""
    s, r, f, d = report.submitted, report.received, report.refused, report.judicial_delays
    yield "a.submitted", "", "", "", "", s.total
    yield "a.submitted", "", report.contact_point, "", "", s.by_contact_point
    yield "a.submitted.by_agencies", "", "", "", "", s.by_agencies
    for agency in s.by_agency:
        yield "a.submitted", "", agency.agency, "", "", agency.count
    yield "b.received", "", "", "", "", r.total
    yield "b.answered", "", "", "", "", r.answered
    yield "b.received", "", "", "urgent", "", r.urgent_received
    yield "b.answered", "", "", "urgent", "", r.urgent_answered
    yield "b.received", "", "", "non-urgent", "", r.non_urgent_received
    yield "b.answered", "", "", "non-urgent", "", r.non_urgent_answered
    for c in r.by_requesting_country:
        yield "b.received", c.country, "", "", "", c.urgent_received + c.non_urgent_received
        yield "b.answered", c.country, "", "", "", c.urgent_answered + c.non_urgent_answered
        yield "b.received", c.country, "", "urgent", "", c.urgent_received
        yield "b.answered", c.country, "", "urgent", "", c.urgent_answered
        yield "b.received", c.country, "", "non-urgent", "", c.non_urgent_received
        yield "b.answered", c.country, "", "non-urgent", "", c.non_urgent_answered
    yield "c.refused", "", "", "", "", f.total
    for country in f.by_requesting_country:
        yield "c.refused", country.country, "", "", "", country.count
    for ground in f.by_ground:
        yield "c.refused", "", "", "", ground.ground, ground.count
    for both in f.by_country_and_ground:
        yield "c.refused", both.country, "", "", both.ground, both.count
    yield "d.judicial_delays", "", "", "", "", d.total
    for country in d.by_requesting_country:
        yield "d.judicial_delays", country.country, "", "", "", country.count


def as_csv(report: Art18Report) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(COLUMNS)
    start, end = report.period.start.isoformat(), report.period.end.isoformat()
    for row in _rows(report):
        writer.writerow((report.contact_point, start, end, *row))
    return out.getvalue().encode()


def as_html(report: Art18Report, *, contact_point_name: str) -> bytes:
    template = _env.get_template("report.html")
    return template.render(report=report, name=contact_point_name, css=_CSS).encode()


def filename(report: Art18Report, fmt: Format) -> str:
    """``art18-HR-SPOC-2026.csv``, or with the period's first and last day when it is not a year."""
    label_ = report.period.label.replace(" – ", "_").replace(" ", "").replace(":", "")
    safe = "".join(ch for ch in label_ if ch.isalnum() or ch in "-_.")
    return f"art18-{report.contact_point}-{safe}.{fmt}"
