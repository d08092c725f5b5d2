"""``spoc stats export``: the Art. 18 statistics of a contact point of this node, to a file.

    spoc stats export --year 2026 --format csv --out art18-2026.csv
    spoc stats export --from 2026-01-01 --to 2026-07-01 --contact-point HR-SPOC --format html --out h1.html

The operator of the node runs it (on the node's database, ``SPOC_DATABASE_URL``); it is audited as
``stats:exported`` by ``cli-operator``. Without ``--contact-point`` the node's one contact point is used (a
hub names one). ``--format html`` writes the printable report (print it, or print to PDF, and send it).

Exit codes: 0 written; 2 a usage error (a bad period, an unknown or foreign contact point): nothing written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from broker.stats.export import Format

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from broker.directory.models import ContactPoint
    from broker.keys.service import DatabaseKeyStore

stats_app = typer.Typer(no_args_is_help=True, help="Statistics: Art. 18 of Directive (EU) 2023/977.")
OPERATOR = "cli-operator"


def _usage(message: str) -> NoReturn:
    typer.echo(f"spoc: {message}", err=True)
    raise typer.Exit(2)


@stats_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="The file to write (replaced if it exists).")],
    year: Annotated[str | None, typer.Option("--year", help="A calendar year (UTC), e.g. 2026.")] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="Start of the period: YYYY-MM-DD (or RFC 3339), with --to.")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="End of the period, not included.")] = None,
    contact_point: Annotated[
        str | None,
        typer.Option("--contact-point", help="Its id or country (e.g. HR-SPOC); needed on a hub only."),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="csv, json or html (printable).")] = "csv",
) -> None:
    """Write the Art. 18 statistics of one contact point for a year (or any period) to --out."""
    from broker.audit.service import Actor
    from broker.config import get_settings
    from broker.crypto import MasterKey
    from broker.db import make_engine, make_sessionmaker, unit_of_work, utcnow
    from broker.keys.service import DatabaseKeyStore
    from broker.stats.api import exported
    from broker.stats.export import as_csv, as_html, as_json
    from broker.stats.period import InvalidPeriod, parse_period
    from broker.stats.service import art18

    try:
        period = parse_period(year, start, end)
    except InvalidPeriod as exc:
        _usage(f"--{exc.parameter}: {exc.detail}")
    settings = get_settings()
    engine = make_engine(settings)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            keys = DatabaseKeyStore(session, MasterKey.from_secret(settings.master_key_secret()))
            cp = _contact_point(session, keys, contact_point)
            report = art18(session, cp, period, now=utcnow())
            exported(session, Actor(OPERATOR, "operator"), report, fmt, period)
            if fmt == "html":
                out.write_bytes(as_html(report, contact_point_name=cp.name))
            else:
                out.write_bytes(as_csv(report) if fmt == "csv" else as_json(report))
    finally:
        engine.dispose()
    typer.echo(
        f"{out}: Art. 18 statistics of {report.contact_point} for {report.period.label}: "
        f"{report.submitted.total} submitted, {report.received.total} received, "
        f"{report.received.answered} answered, {report.refused.total} refused, "
        f"{report.judicial_delays.total} time limits exceeded awaiting a judicial authorisation"
    )


def _contact_point(session: Session, keys: DatabaseKeyStore, asked: str | None) -> ContactPoint:
    """The node's contact point named by ``asked`` (id or country), or its only one; a usage error otherwise."""
    from broker.stats.access import hosted

    here = hosted(session, keys)
    if asked is None:
        if len(here) == 1:
            return here[0]
        _usage(
            f"this node hosts {', '.join(cp.id for cp in here) or 'no contact point'}; name one with --contact-point"
        )
    for cp in here:
        if asked.strip().upper() in (cp.id.upper(), cp.country):
            return cp
    mine = ", ".join(cp.id for cp in here)
    _usage(f"{asked} is not a contact point of this node ({mine}); its own node exports its figures")
