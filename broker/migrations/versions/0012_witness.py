"""Nodes witness each other (C2SP tlog-witness): the peers' cosignatures of our checkpoints (append-only, like
every audit table), each peer log's latest cosigned checkpoint, and what each peer's witness has of ours.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from broker.db import JSONType, UTCDateTime

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_MESSAGE = "the audit log is append-only"  # the same words as 0001 and 0003
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_peer_cosignatures",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("checkpoint_id", BigId, nullable=False),
        sa.Column("node_id", sa.String(length=32), nullable=False),
        sa.Column("countries", JSONType, nullable=False),
        sa.Column("witness", sa.String(length=255), nullable=False),
        sa.Column("key_id", sa.String(length=8), nullable=False),
        sa.Column("signed_at", UTCDateTime(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["audit_checkpoints.id"],
            name=op.f("fk_audit_peer_cosignatures_checkpoint_id_audit_checkpoints"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_peer_cosignatures")),
        sa.UniqueConstraint(
            "checkpoint_id", "node_id", "key_id", name=op.f("uq_audit_peer_cosignatures_checkpoint_id")
        ),
    )
    with op.batch_alter_table("audit_peer_cosignatures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_peer_cosignatures_checkpoint_id"), ["checkpoint_id"], unique=False
        )
    _append_only("audit_peer_cosignatures")
    op.create_table(
        "witness_log_state",
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("node_id", sa.String(length=32), nullable=False),
        sa.Column("size", BigId, nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("cosignature", sa.Text(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("origin", name=op.f("pk_witness_log_state")),
    )
    op.create_table(
        "witness_submissions",
        sa.Column("node_id", sa.String(length=32), nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("size", BigId, nullable=False),
        sa.Column("checkpoint_id", BigId, nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("node_id", "origin", name=op.f("pk_witness_submissions")),
    )


def downgrade() -> None:
    op.drop_table("witness_submissions")
    op.drop_table("witness_log_state")
    with op.batch_alter_table("audit_peer_cosignatures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_peer_cosignatures_checkpoint_id"))
    op.drop_table("audit_peer_cosignatures")


def _append_only(table: str) -> None:
    """Refuse UPDATE and DELETE (and on PostgreSQL TRUNCATE), as 0003 does for the other audit tables."""
    if op.get_bind().dialect.name == "postgresql":
        # spoc_append_only() exists since 0001.
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION spoc_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )
