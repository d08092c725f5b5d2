"""The case file's beat task: cross-check what the contact points held on this node can read
(``broker.crosscheck.service.run_batch``).

Each run takes batches until none is left or ``MAX_BATCHES`` ran, one unit of work per batch (a batch is
all or nothing: its scans, hashes, links, notifications and audit entries commit together). Batches of
one node are serialised by the service itself, so two workers running the task at once only wait.
"""

from __future__ import annotations

from broker.crosscheck.service import DEFAULT_BATCH, run_batch
from broker.db import unit_of_work
from broker.keys.service import DatabaseKeyStore
from workers.celery_app import app
from workers.runtime import runtime
from workers.tasks import BeatTask

MAX_BATCHES = 20


@app.task(name="spoc.crosscheck.batch", base=BeatTask)
def crosscheck() -> dict[str, int]:
    totals = {"scanned": 0, "links": 0}
    for _ in range(MAX_BATCHES):
        with unit_of_work(runtime().sessionmaker) as session:
            done = run_batch(session, DatabaseKeyStore(session, runtime().master_key), runtime().master_key)
        totals["scanned"] += done.scanned
        totals["links"] += done.links
        if done.scanned < DEFAULT_BATCH and not done.more:
            break
    return totals
