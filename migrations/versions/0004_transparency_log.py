"""The transparency log (protocol_spec/LOG.md): entries, Merkle nodes, the head, checkpoints.

``log_head`` is one row (id 1) holding the tree size and its frontier; ``log_entries`` the
entries (envelope bytes as stored); ``log_nodes`` every perfect-subtree root; ``log_checkpoints``
the checkpoints signed so far. Backfill: the statements already accepted are appended in the
order they were accepted (``server/tlog.py``, :func:`backfill`), so none is without its entry.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 20:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ostraca.server.tlog import backfill

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    head = op.create_table(
        "log_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_head")),
    )
    op.create_table(
        "log_entries",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("statement_id", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_log_entries")),
    )
    op.create_index(
        op.f("ix_log_entries_statement_id"), "log_entries", ["statement_id"], unique=False
    )
    op.create_table(
        "log_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_log_nodes")),
    )
    op.create_table(
        "log_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_checkpoints")),
    )
    op.create_index("ix_log_checkpoints_signed_at", "log_checkpoints", ["signed_at"], unique=False)
    op.bulk_insert(head, [{"id": 1, "size": 0, "frontier": b""}])
    backfill(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_log_checkpoints_signed_at", table_name="log_checkpoints")
    op.drop_table("log_checkpoints")
    op.drop_table("log_nodes")
    op.drop_index(op.f("ix_log_entries_statement_id"), table_name="log_entries")
    op.drop_table("log_entries")
    op.drop_table("log_head")
