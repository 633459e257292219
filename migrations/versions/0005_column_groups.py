"""Column groups: ``version_blobs.group`` (the column group a listed blob holds; every blob of an
existing version is the ``default`` group's) and ``grants.groups`` (the groups a grant covers;
``NULL``, every group, for existing grants).

Downgrade: refused while a grant names groups, since the older registry would serve every group
under it. Otherwise the blobs of named groups are unlisted (no grant of the older registry may
read them; their owner still can through the namespace) and both columns go.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 20:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("version_blobs") as batch:
        batch.add_column(
            sa.Column("group", sa.String(length=64), server_default="default", nullable=False)
        )
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("groups", sa.JSON(), nullable=True))


def downgrade() -> None:
    bind = op.get_bind()
    limited = bind.execute(
        sa.text(
            "SELECT count(*) FROM grants WHERE groups IS NOT NULL "
            "AND grant_id NOT IN (SELECT grant_id FROM revocations)"
        )
    )
    if limited.scalar_one():
        raise RuntimeError(
            "grants limited to column groups exist: the registry before 0005 would serve every "
            "group under them (revoke them first)"
        )
    op.execute(sa.text("DELETE FROM version_blobs WHERE \"group\" <> 'default'"))
    with op.batch_alter_table("grants") as batch:
        batch.drop_column("groups")
    with op.batch_alter_table("version_blobs") as batch:
        batch.drop_column("group")
