"""The cache's trust decision (SPEC 5.7.1): a cached shard is trusted by its size by default, so a
local attacker who can write the cache can change a plaintext shard's bytes unnoticed (a sealed
chunk would not open: ENCRYPTION.md); ``recheck_cache=True``
(and ``verify="paranoid"``) re-verifies every cached chunk against the signed chunk list and
refuses such a copy — nothing decoded from the changed chunk or after it is yielded, and the bad
copy leaves the cache, so the next read downloads the shard again."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pyarrow as pa
import pytest

from ostraca.client import open_dataset
from ostraca.client.cache import BlobCache
from ostraca.client.publishing import PublishResult
from ostraca.protocol_spec import DigestMismatchError

from .stream_helpers import IdentityLike as Identity
from .stream_helpers import flip_byte, grant_access

DATASET = "acme/cached"
CHUNK = 64 * 1024


@pytest.fixture
def cached(
    publish_table: Callable[..., PublishResult], publisher: Identity, researcher: Identity
) -> tuple[pa.Table, PublishResult, BlobCache]:
    """A published table the researcher has read once (every shard in the cache)."""
    ids = list(range(4000))
    text = [hashlib.sha256(str(i).encode()).hexdigest() * 2 for i in ids]
    table = pa.table({"id": pa.array(ids, pa.int64()), "text": text})
    result = publish_table(
        table,
        dataset=DATASET,
        shard_bytes=4 * CHUNK,
        chunk_bytes=CHUNK,
        compression="none",
        encrypt=False,  # sealed chunks would not open either: the plaintext case is the threat
    )
    assert len(result.shards) >= 2
    grant_access(publisher.client, researcher.client, DATASET)
    with open_dataset(DATASET, client=researcher.client) as ds:
        assert ds.to_table().equals(table)
    return table, result, BlobCache(researcher.config.cache_path)


def _read(researcher: Identity, **options: object) -> list[pa.RecordBatch]:
    got: list[pa.RecordBatch] = []
    with open_dataset(DATASET, client=researcher.client, **options) as ds:  # type: ignore[arg-type]
        got.extend(ds)
    return got


def test_the_default_trusts_a_cached_copy_by_its_size(
    cached: tuple[pa.Table, PublishResult, BlobCache], researcher: Identity
) -> None:
    """The threat SPEC 5.7.1 states: a same-size change to a cached file goes unnoticed."""
    table, result, cache = cached
    path = cache.blob_path(result.shards[1].sha256)
    row = result.shards[0].rows + 5
    text = table.column("text")[row].as_py().encode()
    data = path.read_bytes()
    assert data.count(text) == 1
    path.write_bytes(data.replace(text, text.upper()))  # same size, still a valid stream
    rows = pa.Table.from_batches(_read(researcher), schema=table.schema)
    assert rows.column("text")[row].as_py() == text.upper().decode()  # believed
    with pytest.raises(DigestMismatchError, match=r"shard 1 "):
        _read(researcher, recheck_cache=True)


@pytest.mark.parametrize("options", [{"recheck_cache": True}, {"verify": "paranoid"}])
@pytest.mark.parametrize("where", ["first", "boundary", "last"])
def test_recheck_cache_refuses_a_tampered_cached_shard(
    cached: tuple[pa.Table, PublishResult, BlobCache],
    researcher: Identity,
    options: dict[str, object],
    where: str,
) -> None:
    table, result, cache = cached
    victim = result.shards[1]
    path = cache.blob_path(victim.sha256)
    offset = {"first": 0, "boundary": CHUNK, "last": victim.bytes - 1}[where]
    flip_byte(path, offset)
    got: list[pa.RecordBatch] = []
    with (
        open_dataset(DATASET, client=researcher.client, **options) as ds,  # type: ignore[arg-type]
        pytest.raises(DigestMismatchError, match=rf"shard 1 .*chunk {offset // CHUNK} "),
    ):
        got.extend(ds)
    # What was yielded is authentic: shard 0 and, at most, shard 1's chunks before the change.
    rows = pa.Table.from_batches(got, schema=table.schema)
    assert rows.equals(table.slice(0, rows.num_rows))
    assert rows.num_rows < result.shards[0].rows + victim.rows
    # The bad copy left the cache; the next read downloads and verifies the shard again.
    assert not path.exists()
    again = pa.Table.from_batches(_read(researcher, recheck_cache=True), schema=table.schema)
    assert again.equals(table)


def test_recheck_cache_refuses_a_tampered_cached_chunk_list(
    cached: tuple[pa.Table, PublishResult, BlobCache], researcher: Identity
) -> None:
    """A cached chunk list is re-hashed at every use: one changed to match changed shard bytes
    is not believed (the signed manifest's digest is fetched again)."""
    _, result, cache = cached
    victim = result.shards[1]
    shard = cache.blob_path(victim.sha256)
    flip_byte(shard, 10)
    data = shard.read_bytes()
    forged = hashlib.sha256(data[:CHUNK]).digest()
    chunks = cache.blob_path(victim.chunks)
    chunks.write_bytes(forged + chunks.read_bytes()[32:])
    with pytest.raises(DigestMismatchError, match=r"shard 1 .*chunk 0 "):
        _read(researcher, recheck_cache=True)
