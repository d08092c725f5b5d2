"""The audit tables. Entries, leaves, tree nodes, checkpoints, cosignatures and alerts are insert-only:
database triggers refuse UPDATE and DELETE on each (PostgreSQL and SQLite).

``audit_entries`` rows are written in the transaction of the change they record, without a position.
``audit_pending`` is a queue of entries not yet in the log. The sequencer (one at a time, under a lock)
moves a batch from the queue into ``audit_leaves``, assigning consecutive positions and hashes, and
stores in ``audit_nodes`` every complete Merkle subtree the batch finishes. Writers never read "the last
row", so concurrent writers cannot fork the log.

``audit_checkpoints`` are the log's signed tree heads (C2SP checkpoint notes); ``audit_cosignatures``
the contact points' witness cosignatures of them, ``audit_peer_cosignatures`` the other nodes' witnesses'
(C2SP tlog-witness, ``broker.witness``); ``audit_witness_state`` the one mutable table, each
witness's last cosigned tree (what the next checkpoint must be consistent with); ``audit_alerts`` forks
and inconsistencies found by the log, the witnesses or the verifier.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, JSONType, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")


class AuditEntry(Base):
    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    countries: Mapped[list[str]] = mapped_column(JSONType, default=list)
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    # The national auditor's scope is "countries @> '[CC]'": a GIN index with jsonb_path_ops serves
    # containment only. PostgreSQL only: SQLite has no equivalent and scans json_each instead.
    __table_args__ = (
        Index(
            "ix_audit_entries_countries",
            "countries",
            postgresql_using="gin",
            postgresql_ops={"countries": "jsonb_path_ops"},
        ).ddl_if(dialect="postgresql"),
    )


class AuditPending(Base):
    __tablename__ = "audit_pending"

    # The entry waiting to be appended. No foreign key on PostgreSQL (migration 0015): its referential
    # trigger locked every entry as it was queued (a write to the entries' heap), and the row is written by
    # the statement that takes its entry's id, before the entry (broker.audit.service._write_recorded).
    # SQLite keeps it, as it keeps the leaves' (0014).
    entry_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)

    __table_args__ = (ForeignKeyConstraint(["entry_id"], ["audit_entries.id"]).ddl_if(dialect="sqlite"),)


class AuditLeaf(Base):
    __tablename__ = "audit_leaves"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    # The entry this leaf hashes. No foreign key on PostgreSQL (migration 0014): checking it cost the
    # sequencer more PostgreSQL CPU per append than writing the leaf, because each check locks the entry
    # row (FOR KEY SHARE), which writes to the entries' heap. What it guarded is guaranteed otherwise: the
    # sequencer reads the entry in the transaction that inserts the leaf, entries can never be deleted
    # (the append-only triggers refuse DELETE and TRUNCATE), and the full verification names any leaf
    # whose entry is missing. SQLite keeps it (a table rebuild would drop the triggers; speed is moot).
    entry_id: Mapped[int] = mapped_column(BigId, unique=True)
    leaf_hash: Mapped[str] = mapped_column(String(64))  # hex SHA-256(0x00 || canonical entry), RFC 6962
    chain_hash: Mapped[str] = mapped_column(String(64))  # hex SHA-256(prev chain || leaf hash)
    # The canonical entry exactly as hashed into ``leaf_hash`` (kept by the sequencer since migration 0014,
    # NULL before): verification hashes these bytes and checks the entry's columns against them.
    document: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)

    __table_args__ = (ForeignKeyConstraint(["entry_id"], ["audit_entries.id"]).ddl_if(dialect="sqlite"),)


class AuditNode(Base):
    """A complete subtree of the Merkle tree: leaves ``[idx << level, (idx + 1) << level)``, level >= 1."""

    __tablename__ = "audit_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))  # RFC 6962 SHA-256(0x01 || left || right)


class AuditCheckpoint(Base):
    """A signed tree head: the C2SP checkpoint note exactly as the log signed it (log signature only)."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    origin: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigId, index=True)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kid: Mapped[str] = mapped_column(String(64))  # RFC 7638 thumbprint of the log key that signed
    note: Mapped[str] = mapped_column(Text)


class AuditCosignature(Base):
    """A witness's ``cosignature/v1`` line on a checkpoint, after it checked consistency."""

    __tablename__ = "audit_cosignatures"
    __table_args__ = (UniqueConstraint("checkpoint_id", "witness"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    checkpoint_id: Mapped[int] = mapped_column(BigId, ForeignKey("audit_checkpoints.id"), index=True)
    witness: Mapped[str] = mapped_column(String(32))  # the contact point, e.g. AL-SPOC
    kid: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    line: Mapped[str] = mapped_column(Text)


class AuditPeerCosignature(Base):
    """Another node's witness's ``cosignature/v1`` line on one of our checkpoints (C2SP tlog-witness).

    Stored only after the line verified against the witness key the regional directory lists for that node;
    ``countries`` are the countries that node serves, as the directory said then (what an auditor reads)."""

    __tablename__ = "audit_peer_cosignatures"
    __table_args__ = (UniqueConstraint("checkpoint_id", "node_id", "key_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    checkpoint_id: Mapped[int] = mapped_column(BigId, ForeignKey("audit_checkpoints.id"), index=True)
    node_id: Mapped[str] = mapped_column(String(32))  # the peer node, e.g. "xk"
    countries: Mapped[list[str]] = mapped_column(JSONType, default=list)
    witness: Mapped[str] = mapped_column(String(255))  # the cosignature's key name, e.g. spoc/witness/xk
    key_id: Mapped[str] = mapped_column(String(8))  # hex of the C2SP key ID
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the cosignature's own timestamp
    line: Mapped[str] = mapped_column(Text)


class AuditWitnessState(Base):
    """The largest tree a witness has cosigned: the next one must be consistent with it."""

    __tablename__ = "audit_witness_state"

    witness: Mapped[str] = mapped_column(String(32), primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(BigId, ForeignKey("audit_checkpoints.id"))
    size: Mapped[int] = mapped_column(BigId)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditAlert(Base):
    """A fork or an inconsistency: two views of the log that cannot both be true."""

    __tablename__ = "audit_alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))  # fork | inconsistent | beyond-log | bad-signature
    reporter: Mapped[str] = mapped_column(String(64))  # "log", a witness (AL-SPOC), "verifier"
    checkpoint_id: Mapped[int | None] = mapped_column(BigId, default=None)
    other_checkpoint_id: Mapped[int | None] = mapped_column(BigId, default=None)
    detail: Mapped[str] = mapped_column(String(500))
