"""Audit-log beat tasks: sign checkpoints at an interval, have the contact points cosign them as witnesses.

Both are idempotent. ``checkpoint`` signs only when the log grew (otherwise the latest checkpoint already
covers it) and, after its commit, asks the witnesses to cosign. ``witness`` has each contact point check
the latest checkpoint against the last tree it cosigned, one transaction per witness so that one
witness's alert does not roll back another's cosignature, then looks for forks among all checkpoints.
Between nodes (``broker.witness``): ``submit`` sends the latest checkpoint to every peer node's witness (C2SP
tlog-witness) and keeps their cosignatures, after each new checkpoint and on a beat (a peer that was down
gets it next time); ``gossip`` compares what the peers' witnesses cosigned with what this one did. Both talk
to peers with no database transaction open and never raise for a peer's failure.
An inconsistent log is never signed: the alert is committed and the task returns normally (retrying would
not make the log consistent; the alert is for people).
"""

from __future__ import annotations

import logging

from broker.audit import checkpoints
from broker.audit.service import sequence_all
from broker.audit.witness import cosign_latest, detect_forks, witnesses
from broker.config import get_settings
from broker.db import unit_of_work
from broker.keys.service import DatabaseKeyStore
from broker.witness.gossip import gossip_all
from broker.witness.submit import submit_all
from workers.celery_app import app
from workers.runtime import peer_http, runtime
from workers.tasks import SpocTask

log = logging.getLogger("spoc.workers.audit")


@app.task(name="spoc.audit.checkpoint", base=SpocTask)
def checkpoint() -> int | None:
    """Sequence pending entries and sign a checkpoint if the log grew; returns the checkpoint id."""
    with unit_of_work(runtime().sessionmaker) as session:
        sequence_all(session, batch=get_settings().audit_batch_size)
        issued = checkpoints.issue(session, DatabaseKeyStore(session, runtime().master_key))
        checkpoint_id = issued.checkpoint.id if issued.checkpoint else None
    if checkpoint_id is None:
        log.error("audit checkpoint refused: %s", issued.problem)
    elif issued.new:
        witness.delay()
        witness_submit.delay()
    return checkpoint_id


@app.task(name="spoc.witness.submit", base=SpocTask)
def witness_submit() -> dict[str, str]:
    """Send the latest checkpoint to every peer node's witness; ``{node: status}``."""
    return {s.node_id: s.status for s in submit_all(runtime().sessionmaker, peer_http())}


@app.task(name="spoc.witness.gossip", base=SpocTask)
def witness_gossip() -> dict[str, int]:
    """Compare the peers' witnesses' views of every log with this witness's; counts by outcome."""
    counts: dict[str, int] = {}
    for finding in gossip_all(runtime().sessionmaker, peer_http()):
        counts[finding.status] = counts.get(finding.status, 0) + 1
    return counts


@app.task(name="spoc.audit.witness", base=SpocTask)
def witness() -> dict[str, str]:
    """Every contact point checks and cosigns the latest checkpoint; then forks are looked for."""
    with unit_of_work(runtime().sessionmaker) as session:
        names = witnesses(session)
    outcome: dict[str, str] = {}
    for name in names:
        with unit_of_work(runtime().sessionmaker) as session:
            result = cosign_latest(session, DatabaseKeyStore(session, runtime().master_key), name)
            outcome[name] = result.status if result else "no-checkpoint"
    with unit_of_work(runtime().sessionmaker) as session:
        for alert in detect_forks(session):
            outcome[f"alert-{alert.id}"] = alert.kind
    return outcome
