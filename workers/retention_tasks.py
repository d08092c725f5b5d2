"""Retention's beat task: delete the content of exchanges past their retention period, held ones skipped
(``broker.retention.service.sweep``; docs/retention.md).

Each run takes batches of ``retention_batch_size`` exchanges until none is due or ``MAX_BATCHES`` ran, one unit
of work per batch: a batch's deletions and their audit entries commit together or not at all. Two runs at once
do not delete twice: the deletion locks the messages it deletes and skips those already deleted.
"""

from __future__ import annotations

from broker.config import get_settings
from broker.db import unit_of_work
from broker.retention.service import sweep as sweep_batch
from workers.celery_app import app
from workers.runtime import runtime
from workers.tasks import BeatTask

MAX_BATCHES = 50


@app.task(name="spoc.retention.sweep", base=BeatTask)
def sweep() -> dict[str, int]:
    settings = get_settings()
    totals = {"exchanges": 0, "messages": 0}
    for _ in range(MAX_BATCHES):
        with unit_of_work(runtime().sessionmaker) as session:
            done = sweep_batch(session, settings)
        totals["exchanges"] += len(done.conversations)
        totals["messages"] += done.messages
        if len(done.conversations) < settings.retention_batch_size:
            break
    return totals
