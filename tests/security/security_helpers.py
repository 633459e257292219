"""Attacks on a real registry over HTTP, and proof that a refusal changed nothing.

:func:`serve` runs the registry app of any :class:`Settings` under uvicorn on a loopback
port (:func:`serve_app` any app, e.g. one with a movable clock); :func:`snapshot` reads every
table's rows, the blob store's file list and the audit log, and :meth:`Snapshot.changes` says
what differs, so a test can assert that a refused request left nothing behind but (at most)
its own audit entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, func, select

from ostraca.server.app import create_app
from ostraca.server.settings import Settings

from ..registry_helpers import Registry, serve_app


@contextmanager
def serve(settings: Settings) -> Iterator[Registry]:
    """The registry of ``settings`` (database already migrated) until the block ends."""
    with serve_app(create_app(settings)) as url:
        yield Registry(url=url, data_dir=settings.data_dir, settings=settings)


@dataclass(frozen=True)
class Snapshot:
    rows: dict[str, int]
    files: frozenset[str]
    audit: tuple[tuple[object, ...], ...]

    def changes(self, after: Snapshot) -> dict[str, Any]:
        """What ``after`` has that this snapshot has not: row counts per table, files added
        or removed, audit rows appended (the audit log is append-only)."""
        out: dict[str, Any] = {}
        rows = {t: after.rows[t] - n for t, n in self.rows.items() if after.rows[t] != n}
        if rows:
            out["rows"] = rows
        if self.files != after.files:
            out["files"] = {"added": after.files - self.files, "gone": self.files - after.files}
        if after.audit[: len(self.audit)] != self.audit:
            out["audit_rewritten"] = True
        if len(after.audit) > len(self.audit):
            out["audit"] = after.audit[len(self.audit) :]
        return out


def snapshot(settings: Settings) -> Snapshot:
    """Every table's row count, the store's files, and the audit log's rows (without time)."""
    engine = create_engine(settings.sqlalchemy_url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            rows = {
                name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in meta.tables.items()
            }
            events = meta.tables["audit_events"]
            columns = [c for c in events.c if c.name != "time"]
            audit = tuple(
                tuple(row) for row in conn.execute(select(*columns).order_by(events.c.id))
            )
    finally:
        engine.dispose()
    root = settings.storage_path
    files = frozenset(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return Snapshot(rows=rows, files=files, audit=audit)


def blob_route(doc: dict[str, Any]) -> str:
    """The path template of the blob GET in an OpenAPI document (``{digest}`` last)."""
    paths: dict[str, dict[str, Any]] = doc["paths"]
    return next(p for p, ops in paths.items() if p.endswith("/blobs/{digest}") and "get" in ops)


def storage_root(tmp_path: Path) -> str:
    return f"file://{tmp_path / 'blobs'}"
