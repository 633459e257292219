"""Initial schema: identities, namespaces, datasets and versions, blobs, uploads, access.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 10:41:09.708738
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("principal", sa.String(length=64), nullable=True),
        sa.Column("dataset", sa.String(length=160), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("grant_id", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_dataset_id", "audit_events", ["dataset", "id"], unique=False)

    op.create_table(
        "blobs",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_blobs")),
    )
    op.create_table(
        "login_nonces",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("keyid", sa.String(length=64), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_login_nonces")),
    )
    op.create_index(op.f("ix_login_nonces_expires"), "login_nonces", ["expires"], unique=False)

    op.create_table(
        "principals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("keyid", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("affiliation", sa.String(length=256), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('institution', 'researcher')", name=op.f("ck_principals_kind")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_principals")),
        sa.UniqueConstraint("keyid", name=op.f("uq_principals_keyid")),
    )
    op.create_table(
        "auth_tokens",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=False),
        sa.Column("keyid", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["principal_id"], ["principals.id"], name=op.f("fk_auth_tokens_principal_id_principals")
        ),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_auth_tokens")),
    )
    op.create_index(op.f("ix_auth_tokens_expires"), "auth_tokens", ["expires"], unique=False)
    op.create_index(
        op.f("ix_auth_tokens_principal_id"), "auth_tokens", ["principal_id"], unique=False
    )

    op.create_table(
        "namespaces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["principals.id"], name=op.f("fk_namespaces_owner_id_principals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_namespaces")),
        sa.UniqueConstraint("name", name=op.f("uq_namespaces_name")),
    )
    op.create_index(op.f("ix_namespaces_owner_id"), "namespaces", ["owner_id"], unique=False)

    op.create_table(
        "principal_keys",
        sa.Column("keyid", sa.String(length=64), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=False),
        sa.Column("public", sa.String(length=44), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name=op.f("fk_principal_keys_principal_id_principals"),
        ),
        sa.PrimaryKeyConstraint("keyid", name=op.f("pk_principal_keys")),
    )
    op.create_index(
        op.f("ix_principal_keys_principal_id"), "principal_keys", ["principal_id"], unique=False
    )

    op.create_table(
        "upload_sessions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name=op.f("fk_upload_sessions_principal_id_principals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_sessions")),
    )
    op.create_index(
        op.f("ix_upload_sessions_expires"), "upload_sessions", ["expires"], unique=False
    )
    op.create_index(
        op.f("ix_upload_sessions_principal_id"), "upload_sessions", ["principal_id"], unique=False
    )

    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=160), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("license", sa.String(length=128), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("terms_sha256", sa.String(length=64), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("total_rows", sa.BigInteger(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("publisher", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace_id"], ["namespaces.id"], name=op.f("fk_datasets_namespace_id_namespaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("name", name=op.f("uq_datasets_name")),
    )
    op.create_index(op.f("ix_datasets_namespace_id"), "datasets", ["namespace_id"], unique=False)

    op.create_table(
        "access_requests",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("requester_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("grant_id", sa.String(length=64), nullable=True),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'granted', 'denied')", name=op.f("ck_access_requests_status")
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_access_requests_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(
            ["requester_id"],
            ["principals.id"],
            name=op.f("fk_access_requests_requester_id_principals"),
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_access_requests")),
    )
    op.create_index(
        op.f("ix_access_requests_dataset_id"), "access_requests", ["dataset_id"], unique=False
    )
    op.create_index(
        op.f("ix_access_requests_requester_id"), "access_requests", ["requester_id"], unique=False
    )

    op.create_table(
        "grants",
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("publisher", sa.String(length=64), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("grantee", sa.String(length=64), nullable=False),
        sa.Column("grantee_id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("min_version", sa.Integer(), nullable=False),
        sa.Column("max_version", sa.Integer(), nullable=True),
        sa.Column("columns", sa.JSON(), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_grants_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(
            ["grantee_id"], ["principals.id"], name=op.f("fk_grants_grantee_id_principals")
        ),
        sa.ForeignKeyConstraint(
            ["publisher_id"], ["principals.id"], name=op.f("fk_grants_publisher_id_principals")
        ),
        sa.PrimaryKeyConstraint("grant_id", name=op.f("pk_grants")),
    )
    op.create_index(op.f("ix_grants_dataset_id"), "grants", ["dataset_id"], unique=False)
    op.create_index(op.f("ix_grants_grantee"), "grants", ["grantee"], unique=False)
    op.create_index(op.f("ix_grants_grantee_id"), "grants", ["grantee_id"], unique=False)
    op.create_index(op.f("ix_grants_publisher_id"), "grants", ["publisher_id"], unique=False)

    op.create_table(
        "versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published", sa.DateTime(timezone=True), nullable=False),
        sa.Column("total_rows", sa.BigInteger(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("shards", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_versions_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_versions")),
        sa.UniqueConstraint("dataset_id", "version", name="uq_versions_dataset_version"),
        sa.UniqueConstraint("digest", name=op.f("uq_versions_digest")),
    )
    op.create_table(
        "revocations",
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("revocation_id", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["grants.grant_id"], name=op.f("fk_revocations_grant_id_grants")
        ),
        sa.PrimaryKeyConstraint("grant_id", name=op.f("pk_revocations")),
        sa.UniqueConstraint("revocation_id", name=op.f("uq_revocations_revocation_id")),
    )
    op.create_table(
        "version_blobs",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("kind IN ('shard', 'chunks')", name=op.f("ck_version_blobs_kind")),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"], name=op.f("fk_version_blobs_version_id_versions")
        ),
        sa.PrimaryKeyConstraint("version_id", "digest", name=op.f("pk_version_blobs")),
    )
    op.create_index("ix_version_blobs_digest", "version_blobs", ["digest"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_version_blobs_digest", table_name="version_blobs")

    op.drop_table("version_blobs")
    op.drop_table("revocations")
    op.drop_table("versions")
    op.drop_index(op.f("ix_grants_publisher_id"), table_name="grants")
    op.drop_index(op.f("ix_grants_grantee_id"), table_name="grants")
    op.drop_index(op.f("ix_grants_grantee"), table_name="grants")
    op.drop_index(op.f("ix_grants_dataset_id"), table_name="grants")

    op.drop_table("grants")
    op.drop_index(op.f("ix_access_requests_requester_id"), table_name="access_requests")
    op.drop_index(op.f("ix_access_requests_dataset_id"), table_name="access_requests")

    op.drop_table("access_requests")
    op.drop_index(op.f("ix_datasets_namespace_id"), table_name="datasets")

    op.drop_table("datasets")
    op.drop_index(op.f("ix_upload_sessions_principal_id"), table_name="upload_sessions")
    op.drop_index(op.f("ix_upload_sessions_expires"), table_name="upload_sessions")

    op.drop_table("upload_sessions")
    op.drop_index(op.f("ix_principal_keys_principal_id"), table_name="principal_keys")

    op.drop_table("principal_keys")
    op.drop_index(op.f("ix_namespaces_owner_id"), table_name="namespaces")

    op.drop_table("namespaces")
    op.drop_index(op.f("ix_auth_tokens_principal_id"), table_name="auth_tokens")
    op.drop_index(op.f("ix_auth_tokens_expires"), table_name="auth_tokens")

    op.drop_table("auth_tokens")
    op.drop_table("principals")
    op.drop_index(op.f("ix_login_nonces_expires"), table_name="login_nonces")

    op.drop_table("login_nonces")
    op.drop_table("blobs")
    op.drop_index("ix_audit_events_dataset_id", table_name="audit_events")

    op.drop_table("audit_events")
