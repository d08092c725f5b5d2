"""the audit log keeps each leaf's hashed bytes: ``audit_leaves.document``

The sequencer already computes an entry's RFC 8785 canonical document to hash it into its leaf; it now
stores those bytes with the leaf, so a full verification recomputes every leaf hash from bytes with
SHA-256 in a tight loop instead of rebuilding and re-canonicalising every entry in Python, and checks
the entries' columns against the bytes in the database (``broker.audit.verify``). Leaves appended before
this revision keep NULL and are verified from their entries as before; the column is never updated (the
table stays append-only: adding a column fires no UPDATE trigger, and on SQLite it is a plain
``ALTER TABLE ADD COLUMN``, not a batch copy that would drop the triggers).

On PostgreSQL it also drops the foreign key from ``audit_leaves.entry_id`` to ``audit_entries``: checking
it locked every entry row as its leaf was appended (FOR KEY SHARE, a write to the entries' heap), which
cost the sequencer more PostgreSQL CPU than inserting the leaf itself. Entries cannot be deleted (the
append-only triggers), the sequencer reads each entry in the transaction that appends its leaf, and the
full verification names a leaf whose entry is missing. SQLite keeps the key (dropping it there means
rebuilding the table, which would drop its triggers).

Revision ID: 0014
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


FK = "fk_audit_leaves_entry_id_audit_entries"


def upgrade() -> None:
    op.add_column("audit_leaves", sa.Column("document", sa.LargeBinary(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(FK, "audit_leaves", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key(FK, "audit_leaves", "audit_entries", ["entry_id"], ["id"])
    op.drop_column("audit_leaves", "document")
