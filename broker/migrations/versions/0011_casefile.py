"""The contact point's case file: keyed hashes of selectors, cross-check scans and links (``broker.crosscheck``).

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from broker.db import JSONType, UTCDateTime

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crosscheck_secrets",
        sa.Column("contact_point_id", sa.String(length=32), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_point_id"],
            ["contact_points.id"],
            name=op.f("fk_crosscheck_secrets_contact_point_id_contact_points"),
        ),
        sa.PrimaryKeyConstraint("contact_point_id", name=op.f("pk_crosscheck_secrets")),
    )
    op.create_table(
        "crosscheck_scans",
        sa.Column("contact_point_id", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("selectors", sa.Integer(), nullable=False),
        sa.Column("scanned_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_point_id"],
            ["contact_points.id"],
            name=op.f("fk_crosscheck_scans_contact_point_id_contact_points"),
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_crosscheck_scans_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("contact_point_id", "message_id", name=op.f("pk_crosscheck_scans")),
    )
    op.create_index(op.f("ix_crosscheck_scans_message_id"), "crosscheck_scans", ["message_id"], unique=False)
    op.create_table(
        "crosscheck_selectors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_point_id", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("partial", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_point_id"],
            ["contact_points.id"],
            name=op.f("fk_crosscheck_selectors_contact_point_id_contact_points"),
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_crosscheck_selectors_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crosscheck_selectors")),
    )
    op.create_index(
        op.f("ix_crosscheck_selectors_message_id"), "crosscheck_selectors", ["message_id"], unique=False
    )
    op.create_index(
        "ix_crosscheck_selectors_lookup",
        "crosscheck_selectors",
        ["contact_point_id", "kind", "digest"],
        unique=False,
    )
    op.create_table(
        "crosscheck_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_point_id", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("linked_message_id", sa.String(length=36), nullable=False),
        sa.Column("basis", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_point_id"],
            ["contact_points.id"],
            name=op.f("fk_crosscheck_links_contact_point_id_contact_points"),
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_crosscheck_links_message_id_messages")
        ),
        sa.ForeignKeyConstraint(
            ["linked_message_id"],
            ["messages.id"],
            name=op.f("fk_crosscheck_links_linked_message_id_messages"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crosscheck_links")),
        sa.UniqueConstraint(
            "contact_point_id",
            "message_id",
            "linked_message_id",
            name=op.f("uq_crosscheck_links_contact_point_id"),
        ),
    )
    op.create_index(op.f("ix_crosscheck_links_message_id"), "crosscheck_links", ["message_id"], unique=False)
    op.create_index(
        op.f("ix_crosscheck_links_linked_message_id"), "crosscheck_links", ["linked_message_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_crosscheck_links_linked_message_id"), table_name="crosscheck_links")
    op.drop_index(op.f("ix_crosscheck_links_message_id"), table_name="crosscheck_links")
    op.drop_table("crosscheck_links")
    op.drop_index("ix_crosscheck_selectors_lookup", table_name="crosscheck_selectors")
    op.drop_index(op.f("ix_crosscheck_selectors_message_id"), table_name="crosscheck_selectors")
    op.drop_table("crosscheck_selectors")
    op.drop_index(op.f("ix_crosscheck_scans_message_id"), table_name="crosscheck_scans")
    op.drop_table("crosscheck_scans")
    op.drop_table("crosscheck_secrets")
