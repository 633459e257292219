"""Key rotation: a principal's keys form a chain, each new key introduced by a KeyRotation.

``principal_keys`` gains ``rotated`` (when the key handed its authority on), ``replaces`` (the
key it succeeded; unique, so the chain cannot fork), ``rotation_id`` and ``rotation`` (the
KeyRotation envelope, byte for byte). Existing keys are the registered ones: all NULL.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:12:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Batch mode: SQLite cannot add constraints in place (the table is copied); on PostgreSQL
    # these are plain ALTER TABLE statements.
    with op.batch_alter_table("principal_keys") as batch:
        batch.add_column(sa.Column("rotated", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("replaces", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("rotation_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("rotation", sa.LargeBinary(), nullable=True))
        batch.create_unique_constraint(op.f("uq_principal_keys_replaces"), ["replaces"])
        batch.create_unique_constraint(op.f("uq_principal_keys_rotation_id"), ["rotation_id"])
        batch.create_foreign_key(
            op.f("fk_principal_keys_replaces_principal_keys"),
            "principal_keys",
            ["replaces"],
            ["keyid"],
        )


def downgrade() -> None:
    # A rotated key becomes an ordinary (revoked) key again: without the chain, a key that may
    # no longer sign must not look active. Its successor keeps working as a second key.
    op.execute(
        sa.text(
            "UPDATE principal_keys SET revoked = rotated "
            "WHERE rotated IS NOT NULL AND revoked IS NULL"
        )
    )
    with op.batch_alter_table("principal_keys") as batch:
        batch.drop_constraint(op.f("fk_principal_keys_replaces_principal_keys"), type_="foreignkey")
        batch.drop_constraint(op.f("uq_principal_keys_rotation_id"), type_="unique")
        batch.drop_constraint(op.f("uq_principal_keys_replaces"), type_="unique")
        batch.drop_column("rotation")
        batch.drop_column("rotation_id")
        batch.drop_column("replaces")
        batch.drop_column("rotated")
