"""The contact points' beat task: the deadline monitor (``contact_points.review.monitor``).

Idempotent (a message is warned once and escalated once) and safe to run on several workers at once
(rows are claimed with ``SKIP LOCKED``); one transaction per run. The beat runs it every 60 s
(``workers.celery_app``): fine-grained enough for deadlines of 8 hours and more.
"""

from __future__ import annotations

from broker.db import unit_of_work
from broker.ops.metrics import count_deadlines
from contact_points.review.monitor import check_deadlines
from workers.celery_app import app
from workers.runtime import runtime
from workers.tasks import SpocTask


@app.task(name="spoc.review.deadlines", base=SpocTask)
def check_review_deadlines() -> dict[str, int]:
    with unit_of_work(runtime().sessionmaker) as session:
        run = check_deadlines(session)
    count_deadlines(warned=run.warned, breached=run.breached)  # after the commit: what was raised is kept
    return {"warned": run.warned, "breached": run.breached}
