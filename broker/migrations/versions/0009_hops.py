"""The hops a node sent to or received from its peers (``broker.hop``); a message's addressed agency may live on
another node, so it no longer refers to the local agencies table.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from broker.db import UTCDateTime

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hops",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("peer_node", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("sender_key", sa.Text(), nullable=False),
        sa.Column("receipt", sa.Text(), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("dead_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id", "direction"),
    )
    op.create_index(op.f("ix_hops_message_id"), "hops", ["message_id"], unique=False)
    op.create_index(op.f("ix_hops_next_attempt_at"), "hops", ["next_attempt_at"], unique=False)
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_messages_destination_agency_agencies"), type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_messages_destination_agency_agencies"), "agencies", ["destination_agency"], ["id"]
        )
    op.drop_index(op.f("ix_hops_next_attempt_at"), table_name="hops")
    op.drop_index(op.f("ix_hops_message_id"), table_name="hops")
    op.drop_table("hops")
