"""the audit queue's rows no longer reference their entries by a foreign key (PostgreSQL)

Every audit entry gets a row in ``audit_pending`` until the sequencer appends it. Checking the foreign key
to ``audit_entries`` ran PostgreSQL's referential trigger once per queued row: a lookup of the entry and a
FOR KEY SHARE lock on it, which writes to the entries' heap (the cost 0014 removed from the leaves). It also
forced the queue rows to be written after their entries, a round trip of its own: without the key, one
statement takes the entries' ids from their sequence and queues them together (``broker.audit.service``).

What the key guarded holds otherwise: a queue row is only ever written by the statement that takes its
entry's id, in the transaction that inserts that entry; entries cannot be deleted (the append-only
triggers); the sequencer reads the queue joined to the entries; and the full verification counts the queue
against the entries not yet in the log. SQLite keeps the key (dropping it there rebuilds the table).

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


FK = "fk_audit_pending_entry_id_audit_entries"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(FK, "audit_pending", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key(FK, "audit_pending", "audit_entries", ["entry_id"], ["id"])
