"""Alerts: two views of the log that cannot both be true (a fork, an inconsistent checkpoint).

Kinds: ``fork``, ``inconsistent``, ``bad-signature``, ``beyond-log`` about this node's own log; ``peer-fork``
and ``peer-inconsistent`` about a peer node's log, seen by this node's witness or by gossip between
witnesses (``broker.witness``; the reporter is ``witness:<peer node>``).

An alert is a row in the append-only ``audit_alerts`` table, an audit entry (``log:fork-detected``,
tagged with every country so that every national auditor sees it), and an ERROR log line for the
operators' monitoring. Raising the same alert twice is a no-op: the beat tasks re-check on every run.
"""

from __future__ import annotations

import logging
from typing import Any

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
    evidence: dict[str, Any] | None = None,
) -> AuditAlert:
    """Record an alert once (same kind, reporter and checkpoints) and return it.

    ``evidence`` (e.g. the two signed checkpoint notes of a peer's fork) goes into the audit entry's details:
    the entry is in the append-only log, so the proof of misbehaviour is as tamper-evident as the log."""
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
        actor=Actor(
            reporter, "witness" if reporter.endswith("-SPOC") or reporter.startswith("witness:") else "system"
        ),
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
            **({"evidence": evidence} if evidence else {}),
        },
    )
    log.error("audit log alert %s by %s: %s", kind, reporter, detail)
    return alert


def alerts(session: Session, *, limit: int = 100) -> list[AuditAlert]:
    """The most recent alerts, newest first."""
    return list(session.scalars(select(AuditAlert).order_by(AuditAlert.id.desc()).limit(limit)).all())
