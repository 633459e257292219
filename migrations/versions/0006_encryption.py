"""End-to-end encryption (protocol_spec/ENCRYPTION.md 4.4): principals' encryption keys and the
publishers' key grants, each stored as the signed envelope received. New tables only: nothing to
backfill, and the downgrade drops them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "encryption_keys",
        sa.Column("keyid", sa.String(length=64), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name=op.f("fk_encryption_keys_principal_id_principals"),
        ),
        sa.PrimaryKeyConstraint("keyid", name=op.f("pk_encryption_keys")),
    )
    op.create_index(
        op.f("ix_encryption_keys_principal_id"), "encryption_keys", ["principal_id"], unique=False
    )
    op.create_table(
        "key_grants",
        sa.Column("key_grant_id", sa.String(length=64), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("grantee", sa.String(length=64), nullable=False),
        sa.Column("grantee_id", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.String(length=64), nullable=True),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_key_grants_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(
            ["grantee_id"], ["principals.id"], name=op.f("fk_key_grants_grantee_id_principals")
        ),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["grants.grant_id"], name=op.f("fk_key_grants_grant_id_grants")
        ),
        sa.ForeignKeyConstraint(
            ["recipient"],
            ["encryption_keys.keyid"],
            name=op.f("fk_key_grants_recipient_encryption_keys"),
        ),
        sa.PrimaryKeyConstraint("key_grant_id", name=op.f("pk_key_grants")),
    )
    for column in ("dataset_id", "grantee_id", "grant_id"):
        op.create_index(op.f(f"ix_key_grants_{column}"), "key_grants", [column], unique=False)


def downgrade() -> None:
    op.drop_table("key_grants")
    op.drop_table("encryption_keys")
