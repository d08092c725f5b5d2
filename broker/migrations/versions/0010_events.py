"""Events that cross between nodes (``broker.hop.events``): an event hop is a ``hops`` row with its event id,
kind and signed token; a request for onward dissemination that crossed keeps the id of the event that carried it.

Revision ID: 0010_events
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hops", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("event_kind", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("event", sa.Text(), nullable=True))
        batch_op.alter_column("sender_key", existing_type=sa.Text(), nullable=True)
        batch_op.drop_constraint("uq_hops_message_id", type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_hops_event_id"), ["event_id", "direction"])
    op.create_index(
        "uq_hops_message_id",
        "hops",
        ["message_id", "direction"],
        unique=True,
        postgresql_where=sa.text("event_id IS NULL"),
        sqlite_where=sa.text("event_id IS NULL"),
    )
    with op.batch_alter_table("dissemination_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_id", sa.String(length=36), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_dissemination_requests_event_id"), ["event_id"])


def downgrade() -> None:
    with op.batch_alter_table("dissemination_requests", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_dissemination_requests_event_id"), type_="unique")
        batch_op.drop_column("event_id")
    op.drop_index("uq_hops_message_id", table_name="hops")
    op.execute("DELETE FROM hops WHERE event_id IS NOT NULL")
    with op.batch_alter_table("hops", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_hops_event_id"), type_="unique")
        batch_op.create_unique_constraint("uq_hops_message_id", ["message_id", "direction"])
        batch_op.alter_column("sender_key", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("event")
        batch_op.drop_column("event_kind")
        batch_op.drop_column("event_id")
