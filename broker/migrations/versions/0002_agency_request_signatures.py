"""agency request signatures and key validity

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 08:29:11.248474
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from broker.db import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "seen_nonces",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kid", "nonce", name=op.f("pk_seen_nonces")),
    )
    with op.batch_alter_table("seen_nonces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_seen_nonces_created_at"), ["created_at"], unique=False)

    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_agencies_token_id"), type_="unique")
        batch_op.drop_column("token_hash")
        batch_op.drop_column("token_id")

    with op.batch_alter_table("party_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_before", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("not_after", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("retired_at", UTCDateTime(), nullable=True))

    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.alter_column(
            "receipt", existing_type=sa.String(length=4000), type_=sa.Text(), existing_nullable=True
        )


def downgrade() -> None:
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.alter_column(
            "receipt", existing_type=sa.Text(), type_=sa.String(length=4000), existing_nullable=True
        )

    with op.batch_alter_table("party_keys", schema=None) as batch_op:
        batch_op.drop_column("retired_at")
        batch_op.drop_column("not_after")
        batch_op.drop_column("not_before")

    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_id", sa.VARCHAR(length=32), nullable=True))
        batch_op.add_column(sa.Column("token_hash", sa.VARCHAR(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_agencies_token_id"), ["token_id"])

    with op.batch_alter_table("seen_nonces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_seen_nonces_created_at"))

    op.drop_table("seen_nonces")
