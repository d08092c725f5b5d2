"""``spoc stats export`` run as an operator runs it: the installed executable, in a subprocess, on a node's
SQLite database seeded with the 2025 traffic (so SQLite's SQL is checked too; the other tests run on
PostgreSQL). The files it writes are parsed back and compared with the known answers."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from broker.audit.models import AuditEntry
from broker.db import make_engine
from tests.broker.stats.traffic import EXPECTED
from tests.broker.stats.world import World, sqlite_world

SPOC = Path(sys.executable).parent / "spoc"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return sqlite_world(tmp_path_factory.mktemp("stats-cli"))


def _spoc(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")} | world.env
    return subprocess.run(
        [str(SPOC), "stats", "export", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_export_a_year_as_json_csv_and_html(world: World, tmp_path: Path) -> None:
    as_json, as_csv, as_html = tmp_path / "hr.json", tmp_path / "hr.csv", tmp_path / "hr.html"
    done = _spoc(
        world, "--year", "2025", "--contact-point", "HR-SPOC", "--format", "json", "--out", str(as_json)
    )
    assert done.returncode == 0, done.stderr
    assert "6 submitted, 13 received, 7 answered, 4 refused, 2 time limits exceeded" in done.stdout
    report = json.loads(as_json.read_text())
    for figure in ("submitted", "received", "refused", "judicial_delays"):
        assert report[figure] == EXPECTED[figure], figure

    done = _spoc(world, "--year", "2025", "--contact-point", "hr", "--out", str(as_csv))  # csv by default
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.read_text())))
    counts = {
        (r["figure"], r["requesting_country"], r["agency"], r["urgency"], r["ground"]): int(r["count"])
        for r in rows
    }
    assert counts[("a.submitted", "", "", "", "")] == 6
    assert counts[("c.refused", "AL", "", "", "judicial-authorisation-refused")] == 1
    assert counts[("d.judicial_delays", "SI", "", "", "")] == 1

    done = _spoc(world, "--year", "2025", "--contact-point", "HR", "--format", "html", "--out", str(as_html))
    assert done.returncode == 0, done.stderr
    page = as_html.read_text()
    assert "Statistics under Article 18" in page
    assert "<script" not in page
    assert "http" not in page.split("</style>")[1]

    engine = make_engine(world.settings)
    with engine.connect() as conn:
        exports = conn.execute(
            select(AuditEntry.actor, AuditEntry.details).where(AuditEntry.action == "stats:exported")
        ).all()
    engine.dispose()
    assert [(actor, d["format"]) for actor, d in exports] == [
        ("cli-operator", "json"),
        ("cli-operator", "csv"),
        ("cli-operator", "html"),
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--year", "2025"), "this node hosts"),  # a hub: name the contact point
        (("--year", "2025", "--contact-point", "FR"), "not a contact point of this node"),
        (
            ("--from", "2025-03-01", "--to", "2025-01-01", "--contact-point", "HR"),
            "--to: the period is reversed",
        ),
    ],  # every other bad period: test_stats_service.py (the same parse_period)
)
def test_usage_errors_write_nothing(world: World, tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    out = tmp_path / "x.csv"
    done = _spoc(world, *args, "--out", str(out))
    assert done.returncode == 2
    assert says in done.stderr
    assert not out.exists()
