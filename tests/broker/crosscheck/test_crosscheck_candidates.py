"""The batch's pick of pairs not yet cross-checked (``broker.crosscheck.service._candidates``) stays a probe of
the scans' primary key per candidate, whatever the statistics say (rolled back after the test)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session

from broker.config import Settings
from broker.crosscheck.service import _candidates, run_batch
from broker.crypto import MasterKey
from broker.keys.service import DatabaseKeyStore


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


def test_a_batch_plans_its_statements_for_the_ids_it_was_given(
    db: Session, keys: DatabaseKeyStore, settings: Settings
) -> None:
    """The batch's statements repeat with one shape, so the driver prepares them, and PostgreSQL's generic
    plan for a list of ids read every message held (a batch's cost grew with the volume). Inside a batch
    plans are made per run; the setting ends with the batch's transaction (SET LOCAL)."""
    assert db.scalar(text("SHOW plan_cache_mode")) == "auto"
    run_batch(db, keys, MasterKey.from_secret(settings.master_key_secret()))
    assert db.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
