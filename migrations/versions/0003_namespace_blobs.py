"""Namespace-scoped blobs: ``namespace_blobs`` links a namespace to each blob its owner uploaded
into it (what its manifests may list and its owner may read back); an upload session names its
namespace (``upload_sessions.namespace_id``).

Backfill: every blob a published version lists is linked into that dataset's namespace (the
registry accepted it there). A finished upload that no manifest lists has no recorded uploader,
so it stays unlinked: its owner uploads it again (the bytes are stored once). An open upload
session goes to its principal's first namespace; a session of a principal without one is
dropped (it could never be published).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 20:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "namespace_blobs",
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["digest"], ["blobs.digest"], name=op.f("fk_namespace_blobs_digest_blobs")
        ),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            name=op.f("fk_namespace_blobs_namespace_id_namespaces"),
        ),
        sa.PrimaryKeyConstraint("namespace_id", "digest", name=op.f("pk_namespace_blobs")),
    )
    op.execute(
        sa.text(
            "INSERT INTO namespace_blobs (namespace_id, digest, created) "
            "SELECT d.namespace_id, vb.digest, MIN(b.created) FROM version_blobs vb "
            "JOIN versions v ON v.id = vb.version_id "
            "JOIN datasets d ON d.id = v.dataset_id "
            "JOIN blobs b ON b.digest = vb.digest "
            "GROUP BY d.namespace_id, vb.digest"
        )
    )
    with op.batch_alter_table("upload_sessions") as batch:
        batch.add_column(sa.Column("namespace_id", sa.Integer(), nullable=True))
    op.execute(
        sa.text(
            "UPDATE upload_sessions SET namespace_id = (SELECT MIN(n.id) FROM namespaces n "
            "WHERE n.owner_id = upload_sessions.principal_id)"
        )
    )
    op.execute(sa.text("DELETE FROM upload_sessions WHERE namespace_id IS NULL"))
    with op.batch_alter_table("upload_sessions") as batch:
        batch.alter_column("namespace_id", existing_type=sa.Integer(), nullable=False)
        batch.create_foreign_key(
            op.f("fk_upload_sessions_namespace_id_namespaces"),
            "namespaces",
            ["namespace_id"],
            ["id"],
        )


def downgrade() -> None:
    # Blobs become global again (the 0002 rule: any published blob may be listed by anyone);
    # the links are dropped, the bytes stay.
    with op.batch_alter_table("upload_sessions") as batch:
        batch.drop_constraint(
            op.f("fk_upload_sessions_namespace_id_namespaces"), type_="foreignkey"
        )
        batch.drop_column("namespace_id")
    op.drop_table("namespace_blobs")
