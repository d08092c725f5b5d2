"""The beat schedule: a worker that falls behind must not meet a backlog of stale ticks.

Every tick repeats its predecessor's work (the relay claims what is due, the sequencer takes what is queued),
so a tick the worker reaches after the next one was sent is worth nothing and only delays real work queued
behind it (an ``outbox.process`` of a delivery). Each entry therefore carries ``expires``: Celery drops the
tick unrun once it is older than that."""

from __future__ import annotations

from datetime import timedelta

from broker.config import Settings
from workers.celery_app import create_celery


def _seconds(schedule: object) -> float:
    if isinstance(schedule, (int, float)):
        return float(schedule)
    assert isinstance(schedule, timedelta), schedule
    return schedule.total_seconds()


def test_every_tick_expires_within_a_few_of_its_periods() -> None:
    app = create_celery(Settings(beat_interval_seconds=1.0, region_reconcile_seconds=3600))
    schedule = app.conf.beat_schedule
    assert {"outbox-relay", "audit-sequence", "delivery-dispatch", "audit-witness"} <= set(schedule)
    for name, entry in schedule.items():
        expires = entry.get("options", {}).get("expires")
        assert expires is not None, f"{name} ticks pile up behind a busy worker"
        assert 0 < expires <= 5 * _seconds(entry["schedule"]), name
