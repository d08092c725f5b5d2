"""The regional directory's beat task: refresh it from the peers and the distribution URL (``broker.region.refresh``).

Idempotent (the same directory again installs nothing); each candidate is its own transaction inside
``refresh``. A refusal is audited (and a fork or a wrong signature alerted) there; the task itself never
retries: the next tick is its retry.
"""

from __future__ import annotations

import logging

from broker.config import get_settings
from broker.region.refresh import refresh as refresh_directory
from workers.celery_app import app
from workers.runtime import peer_http, runtime
from workers.tasks import BeatTask

log = logging.getLogger("spoc.workers.region")


@app.task(name="spoc.region.refresh", base=BeatTask)
def refresh() -> dict[str, str]:
    """Ask every source once; the outcome per source (``installed``, ``same``, ``older``, ``refused``, ...)."""
    settings = get_settings()
    if settings.region_anchor is None:
        return {}  # a node outside any region has nothing to refresh
    outcomes = refresh_directory(runtime().sessionmaker, settings, peer_http())
    for outcome in outcomes:
        if outcome.status == "refused":
            log.error("regional directory refused: %s", outcome.line())
    return {o.source: o.status for o in outcomes}
