"""The batch's pick of pairs not yet cross-checked (``broker.crosscheck.service._candidates``) stays a probe of
the scans' primary key per candidate, whatever the statistics say (rolled back after the test)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session

from broker.crosscheck.service import _candidates


def test_the_pick_is_planned_without_an_anti_join_over_every_scan(db: Session) -> None:
    """A young database's statistics (a few rows) made PostgreSQL plan "not yet scanned" as a nested-loop
    anti-join reading every scan for every candidate: quadratic in the messages held, about a second per
    batch at 1,000 messages in the benchmark. The statement keeps the test a per-candidate subplan."""
    captured: list[tuple[str, Any]] = []

    def keep(_conn: object, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        captured.append((statement, parameters))

    connection = db.connection()
    event.listen(connection, "before_cursor_execute", keep)
    try:
        _candidates(db, ["AL-SPOC", "MK-SPOC"], ["m-1", "m-2"], 10)
    finally:
        event.remove(connection, "before_cursor_execute", keep)
    statement, parameters = captured[-1]
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]  # psycopg underneath
    cursor.execute(text("SET LOCAL enable_hashjoin = off").text)  # leave the planner only nested loops
    cursor.execute("EXPLAIN " + statement, parameters)
    plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Anti Join" not in plan
    assert "crosscheck_scans" in plan
