"""the cross-check's work queue: ``crosscheck_pending``, filled by triggers

The cross-check batch used to find its work by asking, every few seconds, which (contact point, message)
pairs of the whole ``messages`` table had no scan yet: a pass over every message ever stored, so its cost grew
with the volume held (at 16,000 messages it already cost PostgreSQL more per submitted message than the
intake's own writes). Work now appears where it arises. A message is put in the queue when it is stored
(intake, a hop from another node) and again when a contact point adds a custody step to it (the
destination countersigning its arrival is what brings a message into that contact point's case file). The
batch looks only at queued messages and takes a message out once no held contact point still has to scan
it; a later custody step puts it back.

Triggers, not application code, fill the queue: every path that stores a message or a custody step
(intake, batches, group commits, decisions a page at a time, hops, dead letters) is covered without
each having to remember it. On PostgreSQL they are statement-level triggers over the inserted rows (one
``INSERT … SELECT`` per statement, COPY included); on SQLite row-level ones. No foreign key: the queue is
read by the message's arrival time, which it carries (indexed: a batch reads the earliest few, whatever the
size of the queue or of the messages table), and a row whose message is gone is dropped by the batch.

This revision queues, once, the messages a contact point held here has still to scan. A third trigger does
the same for one contact point when this node comes to hold a signing key of it (seeding, rotation, a new key
after a revocation): messages taken out of the queue while it was not held are queued again for it.

A queue row carries a counter, ``requeued``, that the PostgreSQL triggers raise when a message already queued is
queued again. A batch takes a row out only if the counter is still what it read: a custody step committed while
the batch was deciding that nothing was left (its trigger found the row there, so it inserted none) keeps the
row, and the next batch scans what that step made due. SQLite runs one writer at a time, so it needs no counter.

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from broker.db import UTCDateTime

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The messages of contact point ``c``'s case file (sent from its country, or received by it: it countersigned
# the arrival) whose content is still held and that ``c`` has not scanned; a join condition on ``m``.
_UNSCANNED = """(
    m.content_deleted_at IS NULL
    AND (
        m.origin_country = c.country
        OR (m.destination_country = c.country AND EXISTS (
            SELECT 1 FROM custody_steps s WHERE s.message_id = m.id AND s.party = c.id
        ))
    )
    AND NOT EXISTS (
        SELECT 1 FROM crosscheck_scans x WHERE x.message_id = m.id AND x.contact_point_id = c.id
    )
)"""


def upgrade() -> None:
    op.create_table(
        "crosscheck_pending",
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("requeued", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_crosscheck_pending")),
    )
    op.create_index(
        op.f("ix_crosscheck_pending_received_at"), "crosscheck_pending", ["received_at"], unique=False
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION spoc_crosscheck_queue_messages() RETURNS trigger AS $$
            BEGIN
                INSERT INTO crosscheck_pending (message_id, received_at)
                    SELECT id, received_at FROM new_rows
                    ON CONFLICT (message_id) DO UPDATE SET requeued = crosscheck_pending.requeued + 1;
                RETURN NULL;
            END;
            $$ LANGUAGE plpgsql;
            """
        )
        op.execute(
            """
            CREATE FUNCTION spoc_crosscheck_queue_custody() RETURNS trigger AS $$
            BEGIN
                INSERT INTO crosscheck_pending (message_id, received_at)
                    SELECT DISTINCT n.message_id, m.received_at FROM new_rows n
                    JOIN contact_points c ON c.id = n.party JOIN messages m ON m.id = n.message_id
                    ON CONFLICT (message_id) DO UPDATE SET requeued = crosscheck_pending.requeued + 1;
                RETURN NULL;
            END;
            $$ LANGUAGE plpgsql;
            """
        )
        op.execute(
            f"""
            CREATE FUNCTION spoc_crosscheck_queue_keys() RETURNS trigger AS $$
            BEGIN
                IF EXISTS (
                    SELECT 1 FROM new_rows k JOIN contact_points c ON c.id = k.party_id
                    WHERE k.use = 'sig' AND k.private_sealed IS NOT NULL
                ) THEN
                    INSERT INTO crosscheck_pending (message_id, received_at)
                        SELECT DISTINCT m.id, m.received_at
                        FROM new_rows k JOIN contact_points c ON c.id = k.party_id
                        JOIN messages m ON {_UNSCANNED}
                        WHERE k.use = 'sig' AND k.private_sealed IS NOT NULL
                        ON CONFLICT (message_id) DO UPDATE SET requeued = crosscheck_pending.requeued + 1;
                END IF;
                RETURN NULL;
            END;
            $$ LANGUAGE plpgsql;
            """  # noqa: S608  # constant SQL: _UNSCANNED is this module's text, nothing from outside
        )
        op.execute(
            "CREATE TRIGGER messages_crosscheck_queue AFTER INSERT ON messages "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION spoc_crosscheck_queue_messages()"
        )
        op.execute(
            "CREATE TRIGGER party_keys_crosscheck_queue AFTER INSERT ON party_keys "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION spoc_crosscheck_queue_keys()"
        )
        op.execute(
            "CREATE TRIGGER custody_steps_crosscheck_queue AFTER INSERT ON custody_steps "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION spoc_crosscheck_queue_custody()"
        )
    else:
        op.execute(
            "CREATE TRIGGER messages_crosscheck_queue AFTER INSERT ON messages "
            "BEGIN INSERT OR IGNORE INTO crosscheck_pending (message_id, received_at) "
            "VALUES (NEW.id, NEW.received_at); END"
        )
        op.execute(
            "CREATE TRIGGER custody_steps_crosscheck_queue AFTER INSERT ON custody_steps "
            "WHEN NEW.party IN (SELECT id FROM contact_points) "
            "BEGIN INSERT OR IGNORE INTO crosscheck_pending (message_id, received_at) "
            "SELECT id, received_at FROM messages WHERE id = NEW.message_id; END"
        )
        op.execute(
            "CREATE TRIGGER party_keys_crosscheck_queue AFTER INSERT ON party_keys "  # noqa: S608  # constant SQL
            "WHEN NEW.use = 'sig' AND NEW.private_sealed IS NOT NULL "
            "AND NEW.party_id IN (SELECT id FROM contact_points) "
            "BEGIN INSERT OR IGNORE INTO crosscheck_pending (message_id, received_at) "
            "SELECT m.id, m.received_at FROM contact_points c JOIN messages m ON "
            + _UNSCANNED
            + " WHERE c.id = NEW.party_id; END"
        )
    # The messages a held contact point (one whose signing key this node has) still has to scan.
    op.execute(
        "INSERT INTO crosscheck_pending (message_id, received_at) "  # noqa: S608  # constant SQL
        "SELECT DISTINCT m.id, m.received_at FROM contact_points c JOIN messages m ON "
        + _UNSCANNED
        + " WHERE EXISTS (SELECT 1 FROM party_keys k WHERE k.party_id = c.id AND k.use = 'sig'"
        " AND k.status = 'active' AND k.private_sealed IS NOT NULL)"
    )


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS party_keys_crosscheck_queue ON party_keys"
        if op.get_bind().dialect.name == "postgresql"
        else "DROP TRIGGER IF EXISTS party_keys_crosscheck_queue"
    )
    op.execute(
        "DROP TRIGGER IF EXISTS custody_steps_crosscheck_queue ON custody_steps"
        if op.get_bind().dialect.name == "postgresql"
        else "DROP TRIGGER IF EXISTS custody_steps_crosscheck_queue"
    )
    op.execute(
        "DROP TRIGGER IF EXISTS messages_crosscheck_queue ON messages"
        if op.get_bind().dialect.name == "postgresql"
        else "DROP TRIGGER IF EXISTS messages_crosscheck_queue"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS spoc_crosscheck_queue_keys()")
        op.execute("DROP FUNCTION IF EXISTS spoc_crosscheck_queue_custody()")
        op.execute("DROP FUNCTION IF EXISTS spoc_crosscheck_queue_messages()")
    op.drop_table("crosscheck_pending")
