"""delivery: push channel with retries and dead letters, pull leases, idempotency purge index

Revision ID: 0003_delivery
Revises: 0002
Create Date: 2026-11-24 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from broker.db import UTCDateTime

revision: str = "0003_delivery"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("channel", sa.String(length=8), server_default="pull", nullable=False))
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), server_default="delivered", nullable=False)
        )
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("next_attempt_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_attempt_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("leased_until", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("lease_count", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index("ix_inbox_items_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_inbox_items_message_id"), ["message_id"], unique=False)

    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotency_records_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_records_created_at"))

    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbox_items_message_id"))
        batch_op.drop_index("ix_inbox_items_due")
        batch_op.drop_column("lease_count")
        batch_op.drop_column("leased_until")
        batch_op.drop_column("last_error")
        batch_op.drop_column("last_attempt_at")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("attempts")
        batch_op.drop_column("status")
        batch_op.drop_column("channel")
