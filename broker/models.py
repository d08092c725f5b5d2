"""Every model, imported once so that ``Base.metadata`` is complete (Alembic, tests)."""

from sqlalchemy import Index

from broker.accounts.models import User, UserSession
from broker.audit.models import (
    AuditAlert,
    AuditCheckpoint,
    AuditCosignature,
    AuditEntry,
    AuditLeaf,
    AuditNode,
    AuditPeerCosignature,
    AuditPending,
    AuditWitnessState,
)
from broker.crosscheck.models import CrosscheckLink, CrosscheckScan, CrosscheckSecret, SelectorHash
from broker.db import Base
from broker.delivery.models import InboxItem
from broker.directory.models import Agency, Agreement, ContactPoint, Country
from broker.hop.models import Hop
from broker.keys.models import PartyKey, SeenNonce
from broker.messages.models import (
    Approval,
    ConditionsAcknowledgement,
    CustodyStep,
    DeadlineEvent,
    DisseminationRequest,
    IdempotencyRecord,
    Message,
    ReviewNotification,
)
from broker.outbox.models import OutboxItem
from broker.region.models import InstalledDirectory
from broker.retention.models import RetentionHold, RetentionReview
from broker.witness.models import WitnessLogState, WitnessSubmission

# The hourly purge of expired Idempotency-Keys scans by age (migration 0003_delivery).
# TODO(messages owner): move to ``index=True`` on IdempotencyRecord.created_at.
Index("ix_idempotency_records_created_at", IdempotencyRecord.created_at)

__all__ = [
    "Agency",
    "Agreement",
    "Approval",
    "AuditAlert",
    "AuditCheckpoint",
    "AuditCosignature",
    "AuditEntry",
    "AuditLeaf",
    "AuditNode",
    "AuditPeerCosignature",
    "AuditPending",
    "AuditWitnessState",
    "Base",
    "ConditionsAcknowledgement",
    "ContactPoint",
    "Country",
    "CrosscheckLink",
    "CrosscheckScan",
    "CrosscheckSecret",
    "CustodyStep",
    "DeadlineEvent",
    "DisseminationRequest",
    "Hop",
    "IdempotencyRecord",
    "InboxItem",
    "InstalledDirectory",
    "Message",
    "OutboxItem",
    "PartyKey",
    "RetentionHold",
    "RetentionReview",
    "ReviewNotification",
    "SeenNonce",
    "SelectorHash",
    "User",
    "UserSession",
    "WitnessLogState",
    "WitnessSubmission",
]
