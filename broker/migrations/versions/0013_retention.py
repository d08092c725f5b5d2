"""Retention (``broker.retention``): when a message's content was deleted and why, legal holds on exchanges, and
compliance reviews.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from broker.db import UTCDateTime

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_deleted_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("content_deletion", sa.String(length=8), nullable=True))
    op.create_index(
        "ix_messages_retention",
        "messages",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text("content_deleted_at IS NULL"),
        sqlite_where=sa.text("content_deleted_at IS NULL"),
    )
    op.create_table(
        "retention_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column("set_by_role", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("set_at", UTCDateTime(), nullable=False),
        sa.Column("released_at", UTCDateTime(), nullable=True),
        sa.Column("released_by", sa.String(length=64), nullable=True),
        sa.Column("release_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_holds")),
    )
    op.create_index(
        "ix_retention_holds_active", "retention_holds", ["conversation_id", "released_at"], unique=False
    )
    op.create_table(
        "retention_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reviewed_by", sa.String(length=64), nullable=False),
        sa.Column("reviewed_by_role", sa.String(length=16), nullable=False),
        sa.Column("reviewed_at", UTCDateTime(), nullable=False),
        sa.Column("exchange_ended_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_reviews")),
    )
    op.create_index(
        op.f("ix_retention_reviews_conversation_id"), "retention_reviews", ["conversation_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_retention_reviews_conversation_id"), table_name="retention_reviews")
    op.drop_table("retention_reviews")
    op.drop_index("ix_retention_holds_active", table_name="retention_holds")
    op.drop_table("retention_holds")
    op.drop_index("ix_messages_retention", table_name="messages")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("content_deletion")
        batch_op.drop_column("content_deleted_at")
