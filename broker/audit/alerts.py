"""Alerts: two views of the log that cannot both be true (a fork, an inconsistent checkpoint).

An alert is a row in the append-only ``audit_alerts`` table, an audit entry (``log:fork-detected``,
tagged with every country so that every national auditor sees it), and an ERROR log line for the
operators' monitoring. Raising the same alert twice is a no-op: the beat tasks re-check on every run.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.models import AuditAlert
from broker.audit.service import Actor, record
from broker.directory.models import ContactPoint

log = logging.getLogger("spoc.audit")


def raise_alert(
    session: Session,
    *,
    kind: str,
    reporter: str,
    detail: str,
    checkpoint_id: int | None = None,
    other_checkpoint_id: int | None = None,
) -> AuditAlert:
    """Record an alert once (same kind, reporter and checkpoints) and return it."""
    existing = session.scalar(
        select(AuditAlert).where(
            AuditAlert.kind == kind,
            AuditAlert.reporter == reporter,
            AuditAlert.checkpoint_id.is_(None)
            if checkpoint_id is None
            else AuditAlert.checkpoint_id == checkpoint_id,
            AuditAlert.other_checkpoint_id.is_(None)
            if other_checkpoint_id is None
            else AuditAlert.other_checkpoint_id == other_checkpoint_id,
        )
    )
    if existing is not None:
        return existing
    alert = AuditAlert(
        kind=kind,
        reporter=reporter,
        detail=detail[:500],
        checkpoint_id=checkpoint_id,
        other_checkpoint_id=other_checkpoint_id,
    )
    session.add(alert)
    session.flush()
    record(
        session,
        actor=Actor(reporter, "witness" if reporter.endswith("-SPOC") else "system"),
        action=AuditAction.LOG_FORK_DETECTED,
        object_type="checkpoint",
        object_id=None if checkpoint_id is None else str(checkpoint_id),
        countries=session.scalars(select(ContactPoint.country)).all(),
        outcome="alert",
        details={
            "kind": kind,
            "alert": alert.id,
            "other_checkpoint": other_checkpoint_id,
            "detail": detail[:500],
        },
    )
    log.error("audit log alert %s by %s: %s", kind, reporter, detail)
    return alert


def alerts(session: Session, *, limit: int = 100) -> list[AuditAlert]:
    """The most recent alerts, newest first."""
    return list(session.scalars(select(AuditAlert).order_by(AuditAlert.id.desc()).limit(limit)).all())
