"""Migrations 0004's and 0009's backfill on a registry that already holds statements: every one
becomes an entry, with its Merkle nodes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, select, update

from ostraca.protocol_spec.merkle import MerkleTree, leaf_hash
from ostraca.server.app import create_app
from ostraca.server.settings import Settings
from ostraca.server.tlog import LogEntry, LogHead, LogNode, backfill, backfill_keys

from ..registry_helpers import serve_app as serve
from .server_helpers import MovableClock
from .tlog_helpers import make_world


def _log(url: str) -> tuple[list[bytes], int, dict[tuple[int, int], bytes]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            entries = [bytes(d) for d in conn.scalars(select(LogEntry.data).order_by(LogEntry.idx))]
            size = int(conn.scalar(select(LogHead.size)) or 0)
            nodes = {(r.level, r.idx): bytes(r.hash) for r in conn.execute(select(LogNode))}
    finally:
        engine.dispose()
    return entries, size, nodes


def test_backfill_logs_every_statement_already_accepted(
    settings: Settings, clock: MovableClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OSTRACA_LOG_ORIGIN", "registry.test/log")
    with serve(create_app(settings, clock=clock)) as url, make_world(tmp_path, url, url) as world:
        other = world.researcher.client.request_access(world.dataset, purpose="again")
        world.publisher.client.deny_request(other.request_id, "no")
        world.publisher.client.revoke(world.grant.grant_id)
    url = settings.sqlalchemy_url
    live, _, _ = _log(url)
    engine = create_engine(url)
    with engine.begin() as conn:  # the registry as it was before the log: statements only
        conn.execute(delete(LogEntry))
        conn.execute(delete(LogNode))
        conn.execute(update(LogHead).values(size=0, frontier=b""))
        backfill(conn)  # what migration 0004 runs
        backfill_keys(conn)  # and 0009 (encryption keys and key grants)
    engine.dispose()
    entries, size, nodes = _log(url)
    assert sorted(entries) == sorted(live)
    # 2 registrations, the manifest, 2 requests, the grant, the denial, the revocation; the
    # publisher's and the researcher's encryption keys, the escrow and the grantee's key grant.
    assert size == len(entries) == 12
    tree = MerkleTree(leaf_hash(e) for e in entries)
    assert nodes == {
        (level, index): tree.node(level, index)
        for level in range(4)
        for index in range(size >> level)
    }
