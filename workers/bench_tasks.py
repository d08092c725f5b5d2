"""A trivial task for the benchmark's "Celery trivial tasks/s" limit: one Redis INCR, nothing else."""

from __future__ import annotations

import redis

from broker.config import get_settings
from workers.celery_app import app


@app.task(name="spoc.bench.noop", ignore_result=True)
def noop(counter: str) -> None:
    redis.Redis.from_url(get_settings().broker_url).incr(counter)
