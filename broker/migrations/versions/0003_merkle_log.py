"""the audit log as a Merkle tree: stored subtrees, signed checkpoints, witness cosignatures, alerts

Revision ID: 0003_merkle
Revises: 0003_delivery
Create Date: 2026-11-24 09:00:00.000000

Also indexes ``audit_entries`` for the auditors' search (time, actor; on PostgreSQL a GIN index on the
countries array for the national auditor's scope), and computes the tree nodes of a log that already has
leaves, so an existing installation upgrades to a complete tree.
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from broker.db import UTCDateTime

revision: str = "0003_merkle"
down_revision: str | None = "0003_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_MESSAGE = "the audit log is append-only"  # the same words as 0001: tests match on them
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY_TABLES = ("audit_nodes", "audit_checkpoints", "audit_cosignatures", "audit_alerts")


def upgrade() -> None:
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", BigId, autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_audit_nodes")),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("origin", sa.String(length=128), nullable=False),
        sa.Column("size", BigId, nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
    )
    with op.batch_alter_table("audit_checkpoints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_checkpoints_size"), ["size"], unique=False)
    op.create_table(
        "audit_cosignatures",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("checkpoint_id", BigId, nullable=False),
        sa.Column("witness", sa.String(length=32), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("signed_at", UTCDateTime(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["audit_checkpoints.id"],
            name=op.f("fk_audit_cosignatures_checkpoint_id_audit_checkpoints"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_cosignatures")),
        sa.UniqueConstraint("checkpoint_id", "witness", name=op.f("uq_audit_cosignatures_checkpoint_id")),
    )
    with op.batch_alter_table("audit_cosignatures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_cosignatures_checkpoint_id"), ["checkpoint_id"], unique=False
        )
    op.create_table(
        "audit_witness_state",
        sa.Column("witness", sa.String(length=32), nullable=False),
        sa.Column("checkpoint_id", BigId, nullable=False),
        sa.Column("size", BigId, nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["audit_checkpoints.id"],
            name=op.f("fk_audit_witness_state_checkpoint_id_audit_checkpoints"),
        ),
        sa.PrimaryKeyConstraint("witness", name=op.f("pk_audit_witness_state")),
    )
    op.create_table(
        "audit_alerts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("reporter", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_id", BigId, nullable=True),
        sa.Column("other_checkpoint_id", BigId, nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_alerts")),
    )
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_entries_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_entries_actor"), ["actor"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # The national auditor's scope is "countries @> '[CC]'": jsonb_path_ops serves containment only.
        # Declared on the model with ddl_if(dialect="postgresql"): SQLite scans json_each instead.
        op.execute(
            "CREATE INDEX ix_audit_entries_countries ON audit_entries USING gin (countries jsonb_path_ops)"
        )
    for table in APPEND_ONLY_TABLES:
        _append_only(table)
    _backfill_nodes()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_audit_entries_countries")
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_entries_actor"))
        batch_op.drop_index(batch_op.f("ix_audit_entries_at"))
    op.drop_table("audit_alerts")
    op.drop_table("audit_witness_state")
    with op.batch_alter_table("audit_cosignatures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_cosignatures_checkpoint_id"))
    op.drop_table("audit_cosignatures")
    with op.batch_alter_table("audit_checkpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_checkpoints_size"))
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_nodes")


def _append_only(table: str) -> None:
    """Refuse UPDATE and DELETE (and on PostgreSQL TRUNCATE) on an audit table, as 0001 does."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION spoc_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}: % on %', TG_OP, TG_TABLE_NAME
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$ LANGUAGE plpgsql;
            """
        )
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


def _backfill_nodes() -> None:
    """Store the interior nodes of the leaves already in the log (RFC 6962 hashing, inlined so that this
    migration keeps meaning the same thing whatever later code does)."""
    bind = op.get_bind()
    nodes = sa.table("audit_nodes", sa.column("level"), sa.column("idx"), sa.column("hash"))
    stack: list[tuple[int, int, bytes]] = []
    expected = 0
    while True:
        batch = bind.execute(
            sa.text("SELECT seq, leaf_hash FROM audit_leaves WHERE seq >= :a ORDER BY seq LIMIT 5000"),
            {"a": expected},
        ).all()
        if not batch:
            break
        rows: list[dict[str, object]] = []
        for seq, leaf_hex in batch:
            if seq != expected:
                raise RuntimeError(f"audit_leaves has a gap at position {expected}; run `spoc audit verify`")
            level, index, value = 0, seq, bytes.fromhex(leaf_hex)
            while stack and stack[-1][0] == level:
                _, left_index, left = stack.pop()
                level, index = level + 1, left_index >> 1
                value = hashlib.sha256(b"\x01" + left + value).digest()
                rows.append({"level": level, "idx": index, "hash": value})
            stack.append((level, index, value))
            expected += 1
        if rows:
            bind.execute(sa.insert(nodes), rows)
