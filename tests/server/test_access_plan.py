"""The read-authorization query uses an index for every table it touches, on SQLite and on
PostgreSQL: a read's cost must not grow with the blobs other datasets list (it once made SQLite
scan every ``version_blobs`` row on every read: 1.4 s instead of 0.17 s for a one-group read
after 2 x 10^5 listed blobs elsewhere)."""

from __future__ import annotations

from sqlalchemy import Engine

from ostraca.server import access
from ostraca.server.db import make_engine

_VALUES = {"digest": "0" * 64, "principal": 1, "dataset": "acme/books"}


def _plan(engine: Engine) -> list[str]:
    """The plan of the query that gathers a read's facts (``access._FACTS``), as text lines;
    on PostgreSQL with sequential scans priced out, so any table without a usable index still
    shows up as one."""
    compiled = access._FACTS.compile(dialect=engine.dialect)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            params = tuple(_VALUES[name] for name in compiled.positiontup or [])
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params)
            return [str(row[3]) for row in rows]
        conn.exec_driver_sql("SET enable_seqscan = off")
        return [str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN {compiled}", _VALUES)]


def test_read_facts_query_is_indexed(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        plan = _plan(engine)
    finally:
        engine.dispose()
    text = "\n".join(plan)
    if engine.dialect.name == "sqlite":
        assert not [line for line in plan if line.startswith(("SCAN", "MATERIALIZE"))], text
        assert "SEARCH version_blobs USING INDEX ix_version_blobs_digest" in text, text
    else:
        assert "Seq Scan" not in text, text
        assert "version_blobs" in text, text
