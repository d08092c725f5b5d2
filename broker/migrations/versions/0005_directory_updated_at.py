"""Directory rows carry the time they last changed, so a process can keep a snapshot of the directory and
know, with one small query, when it is stale (``broker.directory.service``).

Revision ID: 0005
Revises: 0003_review
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from broker.db import UTCDateTime

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0003_review"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("contact_points", "agencies", "agreements")


def upgrade() -> None:
    now = datetime.now(UTC)
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("updated_at", UTCDateTime(), nullable=True))
        op.execute(sa.table(table, sa.column("updated_at", UTCDateTime())).update().values(updated_at=now))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("updated_at")
