"""Merge the parallel 0003 branches (delivery, Merkle log, review) into one head.

Revision ID: 0004
Revises: 0003_delivery, 0003_merkle, 0003_review
"""

from collections.abc import Sequence

revision: str = "0004"
down_revision: str | Sequence[str] | None = ("0003_delivery", "0003_merkle", "0003_review")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
