"""The region's beat tasks: refresh the directory from the peers and the distribution URL (``broker.region.refresh``),
and reconcile this node's hops with every peer (``broker.hop.reconcile``).

Idempotent (the same directory again installs nothing); each candidate is its own transaction inside
``refresh``. A refusal is audited (and a fork or a wrong signature alerted) there; the task itself never
retries: the next tick is its retry.
"""

from __future__ import annotations

import logging

from broker.audit.service import SYSTEM
from broker.config import get_settings
from broker.hop.reconcile import reconcile_all
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


@app.task(name="spoc.region.reconcile", base=BeatTask)
def reconcile() -> dict[str, str]:
    """Reconcile with every peer over the last 7 days; the outcome per peer (``reconciled``, ``mismatch``,
    ``failed: reason``). Each run is audited and a mismatch alerted inside ``reconcile_all``; never retried
    here: a peer down today is compared again at the next tick, over a window that still covers today."""
    settings = get_settings()
    if settings.region_anchor is None:
        return {}
    rt = runtime()
    outcomes = reconcile_all(rt.sessionmaker, rt.master_key, peer_http(), actor=SYSTEM)
    for peer, outcome in outcomes.items():
        if outcome != "reconciled":
            log.error("hops with node %s: %s", peer, outcome)
    return outcomes
