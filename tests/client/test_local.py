"""``open_pulled``: a pulled copy as a verified ShardSource, offline — the same data and
provenance as streaming, the licence window honoured, tampering refused before use."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from ostraca.client.local import open_pulled
from ostraca.client.publishing import PublishResult
from ostraca.client.pull import pull, verify_copy
from ostraca.client.stream import open_dataset
from ostraca.protocol_spec import (
    DigestMismatchError,
    ExpiredError,
    ScopeError,
    UntrustedKeyError,
    VerificationError,
    utc_now,
)

from .stream_helpers import IdentityLike, flip_byte, grant_access

DATASET = "acme/books"
CHUNK = 64 * 1024


def _table(rows: int = 4000) -> pa.Table:
    text = [hashlib.sha256(str(i).encode()).hexdigest() * 2 for i in range(rows)]
    return pa.table({"id": list(range(rows)), "text": text})


def _publish_and_pull(
    publish_table: Callable[..., PublishResult],
    publisher: IdentityLike,
    researcher: IdentityLike,
    dest: Path,
    **approve: object,
) -> tuple[PublishResult, pa.Table]:
    table = _table()
    result = publish_table(
        table, dataset=DATASET, shard_bytes=4 * CHUNK, chunk_bytes=CHUNK, compression="none"
    )
    grant_access(publisher.client, researcher.client, DATASET, **approve)
    pull(DATASET, dest, client=researcher.client)
    return result, table


def test_a_pulled_copy_reads_like_the_stream(
    publish_table: Callable[..., PublishResult],
    publisher: IdentityLike,
    researcher: IdentityLike,
    tmp_path: Path,
) -> None:
    dest = tmp_path / "copy"
    expires = utc_now() + timedelta(days=2)
    result, table = _publish_and_pull(publish_table, publisher, researcher, dest, expires=expires)
    n = len(result.shards)
    assert n >= 3
    with (
        open_pulled(dest, home=researcher.home) as local,
        open_dataset(DATASET, client=researcher.client) as streamed,
    ):
        assert local.keys.source.startswith("keys pinned")
        assert local.provenance == streamed.provenance
        assert local.provenance.manifest_digest == result.digest
        assert list(local.shard_rows) == list(streamed.shard_rows)
        assert local.schema.equals(streamed.schema)
        assert local.to_table().equals(table)
        order = list(reversed(range(n)))
        got = [(i, b.column("id").to_pylist()) for i, b in local.read_shards(order, columns=["id"])]
        want = [
            (i, b.column("id").to_pylist()) for i, b in streamed.read_shards(order, columns=["id"])
        ]
        assert got == want
        assert got[0][0] == n - 1
        # A DataLoader worker or another rank gets a re-opened (re-verified) copy.
        again = pickle.loads(pickle.dumps(local))
        assert again.provenance == local.provenance
        assert again.to_table(columns=["text"]).equals(table.select(["text"]))
    # With no pin at hand, the keys the pull recorded are used.
    assert open_pulled(dest, identity=researcher.key).keys.source.startswith("keys.json")

    # The licence window holds offline: after the grant expires the copy refuses.
    with pytest.raises(ExpiredError):
        open_pulled(dest, home=researcher.home, now=expires + timedelta(seconds=1))
    # Only the publisher's key is trusted, and the grant must name who asks.
    with pytest.raises(UntrustedKeyError):
        open_pulled(dest, publisher_keys=[researcher.key.public])
    copy = open_pulled(dest, publisher_keys=[publisher.key.public], identity=researcher.key)
    assert copy.provenance.grant_id
    with pytest.raises(ScopeError):
        open_pulled(dest, home=researcher.home, grantee=publisher.key.keyid)


def test_tampering_is_refused_before_use(
    publish_table: Callable[..., PublishResult],
    publisher: IdentityLike,
    researcher: IdentityLike,
    tmp_path: Path,
) -> None:
    dest = tmp_path / "copy"
    result, table = _publish_and_pull(publish_table, publisher, researcher, dest)
    src = open_pulled(dest, home=researcher.home, columns=["id"])
    assert src.schema.names == ["id"]

    first, victim = result.shards[0], result.shards[-1]
    # One flipped byte in the last shard's second chunk: shard 0 still reads; of the tampered
    # shard not a row is yielded, and the error names the chunk.
    flip_byte(dest / "shards" / victim.sha256, CHUNK + 10)
    seen: list[int] = []
    batches = src.read_shards([0, len(result.shards) - 1])
    with pytest.raises(DigestMismatchError, match="chunk 1 "):
        seen.extend(index for index, _batch in batches)
    assert set(seen) == {0}
    assert sum(src.shard_rows[:1]) == table.slice(0, first.rows).num_rows
    # `ostraca verify` reports the same shard through the same checks.
    report = verify_copy(dest, home=researcher.home)
    assert [c.what for c in report.failures] == [
        f"shard {len(result.shards) - 1} {victim.sha256[:16]}…"
    ]
    assert "chunk 1 " in report.failures[0].detail
    # A chunk list that does not match the manifest, and a missing shard, refuse too.
    flip_byte(dest / "chunks" / first.chunks, 0)
    with pytest.raises(DigestMismatchError, match="chunk list"):
        list(src.read_shards([0]))
    (dest / "shards" / result.shards[1].sha256).unlink()
    with pytest.raises(VerificationError, match="missing"):
        list(src.read_shards([1]))
