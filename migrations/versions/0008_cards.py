"""Dataset cards and deprecations (SPEC 3.7, 3.8): each stored as the signed envelope received.
New tables only: nothing to backfill, and the downgrade drops them.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-01 23:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def _statement_table(name: str, number: str, key: str) -> None:
    """A table of signed statements about a dataset, one per (dataset, ``number``)."""
    op.create_table(
        name,
        sa.Column(key, sa.String(length=64), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column(number, sa.Integer(), nullable=False),
        sa.Column("publisher", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f(f"fk_{name}_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint(key, name=op.f(f"pk_{name}")),
        sa.UniqueConstraint("dataset_id", number, name=f"uq_{name}_dataset_{number}"),
    )


def upgrade() -> None:
    _statement_table("dataset_cards", "sequence", "card_id")
    _statement_table("deprecations", "version", "deprecation_id")


def downgrade() -> None:
    op.drop_table("deprecations")
    op.drop_table("dataset_cards")
