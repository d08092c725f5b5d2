"""the contact point at work: deadline clock, clarification loop, assignment, H2/H3, notifications, TOTP

Revision ID: 0003_review
Revises: 0003_merkle
Create Date: 2026-11-24 10:00:00.000000

``messages.sender_agency`` loses its foreign key to ``agencies``: an officer's own-initiative provision is
sent by the contact point itself (``AL-SPOC``), which is a party of the exchange but not an agency. The
service checks the sender instead (an authenticated agency, or the officer's own contact point).
Existing requests get their clock started at ``received_at``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from broker.db import UTCDateTime

revision: str = "0003_review"
down_revision: str | None = "0003_merkle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_messages_sender_agency_agencies"), type_="foreignkey")
        batch_op.add_column(sa.Column("clock_started_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("paused_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("paused_seconds", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("extended_seconds", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("deadline_warn_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("deadline_warned_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("deadline_breached_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("supersedes", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("assigned_to", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("composed_by", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_messages_supersedes_messages"), "messages", ["supersedes"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_messages_assigned_to_users"), "users", ["assigned_to"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_messages_composed_by_users"), "users", ["composed_by"], ["id"]
        )
        batch_op.create_index(batch_op.f("ix_messages_supersedes"), ["supersedes"], unique=False)
        batch_op.create_index(batch_op.f("ix_messages_deadline_at"), ["deadline_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_messages_deadline_warn_at"), ["deadline_warn_at"], unique=False)
    # Requests already in flight: their clock started on receipt; the monitor warns them from now on.
    op.execute(
        "UPDATE messages SET clock_started_at = received_at, deadline_warn_at = deadline_at "
        "WHERE deadline_at IS NOT NULL"
    )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_secret", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("totp_last_step", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )

    op.create_table(
        "deadline_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("deadline_at", UTCDateTime(), nullable=True),
        sa.Column("seconds", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_deadline_events_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deadline_events")),
    )
    op.create_index(op.f("ix_deadline_events_message_id"), "deadline_events", ["message_id"], unique=False)

    op.create_table(
        "dissemination_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("requested_by", sa.String(length=32), nullable=False),
        sa.Column("recipient_country", sa.String(length=2), nullable=False),
        sa.Column("recipient_agency", sa.String(length=32), nullable=True),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_dissemination_requests_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dissemination_requests")),
    )
    op.create_index(
        op.f("ix_dissemination_requests_message_id"), "dissemination_requests", ["message_id"], unique=False
    )

    op.create_table(
        "conditions_acknowledgements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_conditions_acknowledgements_message_id_messages")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_conditions_acknowledgements_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conditions_acknowledgements")),
        sa.UniqueConstraint("message_id", "user_id", name=op.f("uq_conditions_acknowledgements_message_id")),
    )
    op.create_index(
        op.f("ix_conditions_acknowledgements_message_id"),
        "conditions_acknowledgements",
        ["message_id"],
        unique=False,
    )

    op.create_table(
        "review_notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_point_id", sa.String(length=32), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("dismissed_at", UTCDateTime(), nullable=True),
        sa.Column("dismissed_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_point_id"],
            ["contact_points.id"],
            name=op.f("fk_review_notifications_contact_point_id_contact_points"),
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_review_notifications_message_id_messages")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_review_notifications_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_notifications")),
    )
    op.create_index(
        op.f("ix_review_notifications_contact_point_id"),
        "review_notifications",
        ["contact_point_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_review_notifications_contact_point_id"), table_name="review_notifications")
    op.drop_table("review_notifications")
    op.drop_index(op.f("ix_conditions_acknowledgements_message_id"), table_name="conditions_acknowledgements")
    op.drop_table("conditions_acknowledgements")
    op.drop_index(op.f("ix_dissemination_requests_message_id"), table_name="dissemination_requests")
    op.drop_table("dissemination_requests")
    op.drop_index(op.f("ix_deadline_events_message_id"), table_name="deadline_events")
    op.drop_table("deadline_events")

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("totp_last_step")
        batch_op.drop_column("totp_secret")

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_deadline_warn_at"))
        batch_op.drop_index(batch_op.f("ix_messages_deadline_at"))
        batch_op.drop_index(batch_op.f("ix_messages_supersedes"))
        batch_op.drop_constraint(batch_op.f("fk_messages_composed_by_users"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_messages_assigned_to_users"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_messages_supersedes_messages"), type_="foreignkey")
        for column in (
            "composed_by",
            "assigned_to",
            "supersedes",
            "deadline_breached_at",
            "deadline_warned_at",
            "deadline_warn_at",
            "extended_seconds",
            "paused_seconds",
            "paused_at",
            "clock_started_at",
        ):
            batch_op.drop_column(column)
        batch_op.create_foreign_key(
            batch_op.f("fk_messages_sender_agency_agencies"), "agencies", ["sender_agency"], ["id"]
        )
