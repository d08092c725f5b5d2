"""the audit log keeps each leaf's hashed bytes: ``audit_leaves.document``

The sequencer already computes an entry's RFC 8785 canonical document to hash it into its leaf; it now
stores those bytes with the leaf, so a full verification recomputes every leaf hash from bytes with
SHA-256 in a tight loop instead of rebuilding and re-canonicalising every entry in Python, and checks
the entries' columns against the bytes in the database (``broker.audit.verify``). Leaves appended before
this revision keep NULL and are verified from their entries as before; the column is never updated (the
table stays append-only: adding a column fires no UPDATE trigger, and on SQLite it is a plain
``ALTER TABLE ADD COLUMN``, not a batch copy that would drop the triggers).

Revision ID: 0015
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("audit_leaves", sa.Column("document", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_leaves", "document")
