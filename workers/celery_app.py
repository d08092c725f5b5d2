"""The Celery application: JSON only, late acks, a beat schedule for the relay and the audit sequencer.

Celery's command line (``celery -A workers.celery_app``) needs a module-level app, so this module
builds one from ``get_settings()``; the database engine is *not* created here but on first use in each
worker process (``workers.runtime``), after the fork.
"""

from __future__ import annotations

from celery import Celery

import workers.signals  # noqa: F401 - the worker's logs, metrics and request ids (Celery's signals)
from broker.config import Settings, get_settings


def create_celery(settings: Settings) -> Celery:
    tick_expiry = max(5.0, settings.beat_interval_seconds * 5)
    app = Celery(
        "spoc",
        broker=settings.broker_url,
        include=[
            "workers.tasks",
            "workers.bench_tasks",
            "workers.audit_tasks",
            "workers.review_tasks",
            "workers.region_tasks",
            "workers.crosscheck_tasks",
            "workers.retention_tasks",
        ],
    )
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=4,
        broker_connection_retry_on_startup=True,
        timezone="UTC",
        enable_utc=True,
        task_always_eager=settings.celery_eager,
        broker_transport_options=(
            {"global_keyprefix": settings.broker_key_prefix} if settings.broker_key_prefix else {}
        ),
        beat_schedule={
            # A tick a busy worker reaches late is dropped (expires): the next tick does the same work.
            "outbox-relay": {
                "task": "spoc.outbox.relay",
                "schedule": settings.beat_interval_seconds,
                "options": {"expires": tick_expiry},
            },
            "audit-sequence": {
                "task": "spoc.audit.sequence",
                "schedule": settings.beat_interval_seconds,
                "options": {"expires": tick_expiry},
            },
            "delivery-dispatch": {
                "task": "spoc.delivery.dispatch",
                "schedule": settings.beat_interval_seconds,
                "options": {"expires": tick_expiry},
            },
            "maintenance-purge": {
                "task": "spoc.maintenance.purge",
                "schedule": settings.purge_interval_seconds,
                "options": {"expires": settings.purge_interval_seconds},
            },
            # A signed checkpoint (and witness cosignatures) every 30 beats: 30 s by default.
            "audit-checkpoint": {
                "task": "spoc.audit.checkpoint",
                "schedule": settings.beat_interval_seconds * 30,
                "options": {"expires": tick_expiry * 30},
            },
            "audit-witness": {
                "task": "spoc.audit.witness",
                "schedule": settings.beat_interval_seconds * 30,
                "options": {"expires": tick_expiry * 30},
            },
            # Nodes witness each other (broker.witness): resubmit to peers that missed a checkpoint, and compare
            # the peers' witnesses' views (gossip) every 60 beats.
            "witness-submit": {
                "task": "spoc.witness.submit",
                "schedule": settings.beat_interval_seconds * 30,
                "options": {"expires": tick_expiry * 30},
            },
            "witness-gossip": {
                "task": "spoc.witness.gossip",
                "schedule": settings.beat_interval_seconds * 60,
                "options": {"expires": tick_expiry * 60},
            },
            # The deadline monitor: warn at 75 %, escalate on breach (workers.review_tasks).
            "review-deadlines": {
                "task": "spoc.review.deadlines",
                "schedule": 60.0,
                "options": {"expires": 60.0},
            },
            # A newer signed regional directory from the peers (and SPOC_REGION_DIRECTORY_URL), if any.
            "region-refresh": {
                "task": "spoc.region.refresh",
                "schedule": settings.region_refresh_seconds,
                "options": {"expires": settings.region_refresh_seconds},
            },
            # Reconciliation of the hops with every peer (broker.hop.reconcile), daily by default.
            **(
                {
                    "region-reconcile": {
                        "task": "spoc.region.reconcile",
                        "schedule": settings.region_reconcile_seconds,
                        "options": {"expires": settings.region_reconcile_seconds},
                    }
                }
                if settings.region_reconcile_seconds > 0
                else {}
            ),
            # The case file: cross-check new messages against what each contact point holds.
            "crosscheck-batch": {
                "task": "spoc.crosscheck.batch",
                "schedule": settings.beat_interval_seconds * 5,
                "options": {"expires": tick_expiry * 5},
            },
            # Retention: delete the content of exchanges past their period, held ones skipped (docs/retention.md).
            "retention-sweep": {
                "task": "spoc.retention.sweep",
                "schedule": settings.retention_sweep_interval_seconds,
                "options": {"expires": settings.retention_sweep_interval_seconds},
            },
        },
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
    )
    return app


app = create_celery(get_settings())
