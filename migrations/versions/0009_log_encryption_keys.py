"""Encryption keys and key grants join the transparency log (LOG.md 1.7): those stored before
are appended in the order they were accepted (``server/tlog.py``, :func:`backfill_keys`).
No schema change. The downgrade leaves the entries: a log never shrinks (LOG.md 1.1).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 23:10:00.000000
"""

from __future__ import annotations

from alembic import op

from ostraca.server.tlog import backfill_keys

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    backfill_keys(op.get_bind())


def downgrade() -> None:
    """Nothing to undo: the appended entries stay (an append-only log)."""
