"""The audit vocabulary: every action the log records, as ``object:verb`` tags.

A closed enum, not free strings, so a typo cannot invent an action an auditor's search would miss.
"""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    MESSAGE_SUBMITTED = "message:submitted"
    MESSAGE_REFUSED_AT_INTAKE = "message:refused-at-intake"
    MESSAGE_QUEUED = "message:queued"
    MESSAGE_APPROVED = "message:approved"
    MESSAGE_REJECTED = "message:rejected"
    MESSAGE_RETURNED = "message:returned"
    MESSAGE_FORWARDED = "message:forwarded"
    MESSAGE_RECEIVED = "message:received"
    MESSAGE_ACCEPTED = "message:accepted"
    MESSAGE_ROUTED = "message:routed"
    MESSAGE_REFUSED = "message:refused"
    MESSAGE_DELIVERED = "message:delivered"
    MESSAGE_ACKNOWLEDGED = "message:acknowledged"
    MESSAGE_ANSWERED = "message:answered"
    CONTENT_READ = "content:read"
    SESSION_LOGIN = "session:login"
    SESSION_LOGIN_FAILED = "session:login-failed"
    SESSION_LOGOUT = "session:logout"
    KEY_CREATED = "key:created"
    KEY_RETIRED = "key:retired"
    KEY_REVOKED = "key:revoked"
    ACCOUNT_CREATED = "account:created"
    DIRECTORY_SEEDED = "directory:seeded"
    # The log about itself. Checkpoints and cosignatures are not entries (each would grow the tree it
    # signs, so the log would never be still); a person asking for one, and every alert, are.
    LOG_CHECKPOINT_REQUESTED = "log:checkpoint-requested"
    LOG_FORK_DETECTED = "log:fork-detected"
    AUDIT_EXPORTED = "audit:exported"
    # --- review: clarification loop, assignment, deadlines, H2/H3, accounts (appended) ---
    MESSAGE_CLARIFICATION_REQUESTED = "message:clarification-requested"
    MESSAGE_RESUBMITTED = "message:resubmitted"
    MESSAGE_SUPERSEDED = "message:superseded"
    MESSAGE_ASSIGNED = "message:assigned"
    DEADLINE_EXTENDED = "deadline:extended"
    DEADLINE_PAUSED = "deadline:paused"
    DEADLINE_RESUMED = "deadline:resumed"
    DEADLINE_WARNED = "deadline:warned"
    DEADLINE_BREACHED = "deadline:breached"
    DISSEMINATION_REQUESTED = "dissemination:requested"
    DISSEMINATION_GRANTED = "dissemination:granted"
    DISSEMINATION_DENIED = "dissemination:denied"
    DISSEMINATION_BLOCKED = "dissemination:blocked"
    CONDITIONS_ACKNOWLEDGED = "conditions:acknowledged"
    NOTIFICATION_DISMISSED = "notification:dismissed"
    ACCOUNT_UPDATED = "account:updated"
    ACCOUNT_LOCKED = "account:locked"
    ACCOUNT_UNLOCKED = "account:unlocked"
    ACCOUNT_PASSWORD_RESET = "account:password-reset"  # noqa: S105 - an audit tag, not a secret
    ACCOUNT_TOTP_ENABLED = "account:totp-enabled"
    ACCOUNT_TOTP_DISABLED = "account:totp-disabled"
    # --- the region (one node per country): the signed regional directory (appended) ---
    REGION_DIRECTORY_INSTALLED = "region:directory-installed"
    REGION_DIRECTORY_REFUSED = "region:directory-refused"
    REGION_DIRECTORY_APPLIED = "region:directory-applied"
    # --- the hop between nodes: the same digest on both sides, so the two logs reconcile ---
    HOP_SENT = "hop:sent"
    HOP_RECEIVED = "hop:received"
    HOP_REFUSED = "hop:refused"
    HOP_DEAD_LETTERED = "hop:dead-lettered"
    HOP_RECONCILED = "hop:reconciled"
    # --- the case file: a cross-check linked two messages of one contact point (kinds matched, no values) ---
    CROSSCHECK_LINKED = "crosscheck:linked"
    # --- nodes witness each other (C2SP tlog-witness): a checkpoint a witness refused (cosignatures are not
    # entries, for the same reason checkpoints are not: each would grow a log and call for another round) ---
    WITNESS_REFUSED = "witness:refused"
    # --- statistics (Art. 18, the dashboard, peers' aggregates): an export, and a reader refused another
    # contact point's figures (naming what it asked for; a refused role is ``access:denied``) ---
    STATS_EXPORTED = "stats:exported"
    STATS_REFUSED = "stats:refused"
    # --- the edge: a call refused because of who made it (401, 403, 404 out of scope, four eyes) ---
    ACCESS_DENIED = "access:denied"
    # --- retention (docs/retention.md): an exchange's content deleted (one entry per message, no content), legal
    # holds set and released, compliance reviews, and every refused attempt (no reason, held data, not ended) ---
    RETENTION_DELETED = "retention:deleted"
    RETENTION_HOLD_SET = "retention:hold-set"
    RETENTION_HOLD_RELEASED = "retention:hold-released"
    RETENTION_REVIEWED = "retention:reviewed"
    RETENTION_REFUSED = "retention:refused"
