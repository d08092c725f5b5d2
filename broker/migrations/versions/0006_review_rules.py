"""Review rules of project issue 12.

* ``approvals.role`` and ``approvals.clearance``: the approver's role and clearance at the moment of the
  approval. Four eyes (and the SECRET supervisor rule) is judged on these, not on what the account is
  today: promoting an officer after it approved must not turn its approval into a supervisor's.
  Existing rows are filled from the accounts as they are now (the best that is known).
* ``deadline_events.reason_code``: the coded reason of a deadline extension (``deadline_extension_reasons``,
  Directive (EU) 2023/977 Art. 5(2)), so that Art. 18(d) statistics can count them.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("clearance", sa.String(length=16), nullable=True))
    approvals = sa.table(
        "approvals", sa.column("user_id", sa.Integer()), sa.column("role"), sa.column("clearance")
    )
    users = sa.table("users", sa.column("id", sa.Integer()), sa.column("role"), sa.column("clearance"))
    of_user = users.c.id == approvals.c.user_id
    op.execute(
        approvals.update().values(
            role=sa.select(users.c.role).where(of_user).scalar_subquery(),
            clearance=sa.select(users.c.clearance).where(of_user).scalar_subquery(),
        )
    )
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.alter_column("role", existing_type=sa.String(length=16), nullable=False)
        batch_op.alter_column("clearance", existing_type=sa.String(length=16), nullable=False)
    with op.batch_alter_table("deadline_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason_code", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deadline_events", schema=None) as batch_op:
        batch_op.drop_column("reason_code")
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_column("clearance")
        batch_op.drop_column("role")
