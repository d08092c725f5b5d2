"""The regional directory a node has installed (``broker.region``): every version, as signed.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from broker.db import JSONType, UTCDateTime

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "region_directories",
        sa.Column("version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("region", sa.String(length=100), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("signed", JSONType, nullable=False),
        sa.Column("signed_by", sa.String(length=64), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("valid_until", UTCDateTime(), nullable=False),
        sa.Column("installed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )


def downgrade() -> None:
    op.drop_table("region_directories")
