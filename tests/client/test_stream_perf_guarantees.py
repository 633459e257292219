"""What the fast cold-cache path must still guarantee (SPEC 2.5): with the whole-shard sha256 no
longer recomputed by default, a changed byte *anywhere* in a shard — first byte, a chunk
boundary, the middle, the very last byte — is still refused, through the registry in every
``verify`` mode and through the receive path (:class:`ChunkVerifier` ``write``, in odd-sized pieces)
offline; a short or long shard is refused; ``verify="paranoid"`` adds the whole-shard digest."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ostraca.client import cache as cache_module
from ostraca.client import open_dataset
from ostraca.client.cache import BlobCache
from ostraca.client.encryption import PlaintextPool
from ostraca.client.fetch import ChunkVerifier
from ostraca.client.publishing import PublishResult
from ostraca.protocol_spec import DigestMismatchError, VerificationError

from .stream_helpers import IdentityLike as Identity
from .stream_helpers import RegistryLike as Registry
from .stream_helpers import batch_end_offsets, blob_file, flip_byte, grant_access

DATASET = "acme/perf"
CHUNK = 64 * 1024


def _table(rows: int = 4000) -> pa.Table:
    ids = list(range(rows))
    text = [hashlib.sha256(str(i).encode()).hexdigest() * 2 for i in ids]
    return pa.table({"id": pa.array(ids, pa.int64()), "text": text})


@pytest.fixture
def granted(
    publish_table: Callable[..., PublishResult], publisher: Identity, researcher: Identity
) -> tuple[pa.Table, PublishResult]:
    table = _table()
    result = publish_table(
        table, dataset=DATASET, shard_bytes=4 * CHUNK, chunk_bytes=CHUNK, compression="none"
    )
    assert len(result.shards) >= 2
    grant_access(publisher.client, researcher.client, DATASET)
    return table, result


@pytest.mark.parametrize("unit", ["chunk", "shard", "paranoid"])
@pytest.mark.parametrize("where", ["first", "boundary", "middle", "last"])
def test_a_changed_byte_anywhere_in_a_shard_is_refused(
    granted: tuple[pa.Table, PublishResult],
    researcher: Identity,
    registry_server: Registry,
    unit: str,
    where: str,
) -> None:
    table, result = granted
    victim = 1
    entry = result.shards[victim]
    path = blob_file(registry_server.data_dir, entry.sha256)
    original = path.read_bytes()
    offset = {
        "first": 0,
        "boundary": CHUNK,
        "middle": entry.bytes // 2,
        "last": entry.bytes - 1,
    }[where]
    flip_byte(path, offset)
    got: list[tuple[int, pa.RecordBatch]] = []
    with (
        open_dataset(DATASET, client=researcher.client, verify=unit) as ds,  # type: ignore[arg-type]
        pytest.raises(DigestMismatchError, match=f"shard {victim}"),
    ):
        got.extend(ds.read_shards(range(len(result.shards))))
    # Everything yielded is authentic and nothing came from the tampered chunk or after it.
    rows = pa.Table.from_batches([b for _, b in got], schema=table.schema)
    assert rows.equals(table.slice(0, rows.num_rows))
    from_victim = [b for i, b in got if i == victim]
    start = offset // CHUNK * CHUNK
    allowed = sum(1 for end in batch_end_offsets(original) if end <= start)
    assert len(from_victim) <= (allowed if unit == "chunk" else 0)
    assert not BlobCache(researcher.config.cache_path).blob_path(entry.sha256).exists()


def _shard(size: int) -> tuple[bytes, bytes, str]:
    data = os.urandom(size)
    chunks = b"".join(hashlib.sha256(data[i : i + CHUNK]).digest() for i in range(0, size, CHUNK))
    return data, chunks, hashlib.sha256(data).hexdigest()


def _receive(
    tmp_path: Path, data: bytes, *, size: int, chunks: bytes, digest: str, whole: bool = False
) -> tuple[ChunkVerifier, bytes]:
    """Feed ``data`` to a verifier through the fetcher's receive path, in odd-sized pieces."""
    path = tmp_path / "part"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        v = ChunkVerifier(
            name="shard 3",
            digest=digest,
            size=size,
            chunk_bytes=CHUNK,
            chunk_list=chunks,
            fd=fd,
            whole=whole,
        )
        for pos in range(0, len(data), 7777):
            v.write(memoryview(data)[pos : pos + 7777])
        v.finish()
    finally:
        os.close(fd)
    return v, path.read_bytes()


def test_receive_path_stores_exactly_the_verified_bytes(tmp_path: Path) -> None:
    data, chunks, digest = _shard(3 * CHUNK + 1234)
    v, stored = _receive(tmp_path, data, size=len(data), chunks=chunks, digest=digest)
    assert stored == data
    assert v.verified == len(data)
    v.wait_for(len(data))


def test_receive_path_refuses_every_changed_byte_position(tmp_path: Path) -> None:
    size = 3 * CHUNK + 1234
    data, chunks, digest = _shard(size)
    for offset in (0, 1, CHUNK - 1, CHUNK, 2 * CHUNK + 17, 3 * CHUNK, size - 1):
        bad = bytearray(data)
        bad[offset] ^= 0x80
        with pytest.raises(DigestMismatchError, match=f"chunk {offset // CHUNK} "):
            _receive(tmp_path, bytes(bad), size=size, chunks=chunks, digest=digest)


def test_short_or_long_shard_is_refused(tmp_path: Path) -> None:
    data, chunks, digest = _shard(2 * CHUNK + 10)
    with pytest.raises(VerificationError):  # the stream ended early
        _receive(tmp_path, data[:-10], size=len(data), chunks=chunks, digest=digest)
    with pytest.raises(DigestMismatchError):  # a byte beyond the manifest's length
        _receive(tmp_path, data + b"x", size=len(data), chunks=chunks, digest=digest)


def test_paranoid_also_checks_the_whole_shard_digest(tmp_path: Path) -> None:
    data, chunks, _ = _shard(2 * CHUNK + 10)
    wrong = hashlib.sha256(b"another shard").hexdigest()
    # The chunk list alone authenticates the bytes; ``whole`` also compares ``ShardEntry.sha256``
    # (a manifest whose two digests disagree is refused only there).
    _receive(tmp_path, data, size=len(data), chunks=chunks, digest=wrong)
    with pytest.raises(DigestMismatchError, match="sha256"):
        _receive(tmp_path, data, size=len(data), chunks=chunks, digest=wrong, whole=True)


def test_plaintext_pool_reuses_a_buffer_only_once_no_view_of_it_is_left() -> None:
    pool = PlaintextPool(keep=2)
    first = pool.take(1000)
    first_id = id(first.obj)
    held = first[10:20]  # a record batch still alive
    del first
    second = pool.take(1000)
    second_id = id(second.obj)
    assert second_id != first_id
    second[:] = b"\x01" * 1000
    assert bytes(held) == bytes(10)  # the buffer in use was not handed out again
    del held, second
    again = pool.take(600)
    assert id(again.obj) in {first_id, second_id}  # reused, not allocated
    assert len(again) == 600


def test_plaintext_pool_gives_each_shard_the_smallest_buffer_that_holds_it() -> None:
    """A stream opens its shards at once, in whatever order its threads get there: the small
    shard must not take the buffer only the large one fits, or the large one is allocated anew
    (64 MiB of fresh memory to fault in on the critical path)."""
    pool = PlaintextPool(keep=2)
    large, small = pool.take(3000), pool.take(1000)
    ids = {len(large): id(large.obj), len(small): id(small.obj)}
    del large, small
    first = pool.take(900)  # the small shard's thread comes first this time
    second = pool.take(3000)
    assert (id(first.obj), id(second.obj)) == (ids[1000], ids[3000])


class _SlowDisk:
    """``os`` as the cache module sees it, on a slow disk: every ``fdatasync`` waits until
    ``release`` is set (at most 10 s, then ``timed_out``), and the one of the blob
    ``fail_digest`` then fails as a full disk would."""

    def __init__(self, fail_digest: str | None = None) -> None:
        self.release = threading.Event()
        self.fail_digest = fail_digest
        self.synced: list[str] = []
        self.timed_out = False

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def fdatasync(self, fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if not self.release.wait(timeout=10):
            self.timed_out = True
        if self.fail_digest is not None and self.fail_digest in name:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.synced.append(name)
        os.fdatasync(fd)


def _read_until_every_row(ds: Any, rows: int, disk: _SlowDisk) -> Iterator[pa.RecordBatch]:
    """The batches of ``ds``; once ``rows`` rows are out, the disk is let go."""
    seen = 0
    for batch in ds:
        seen += batch.num_rows
        if seen == rows:
            disk.release.set()
        yield batch


def test_a_slow_cache_sync_holds_no_shards_decoding(
    granted: tuple[pa.Table, PublishResult], researcher: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every shard is verified and decoded while the cached copies are still being synced:
    the reader waits for the syncs only at the end (before, it waited for shard k-1's after
    shard k, and this read would have stalled until the disk's 10 s)."""
    table, result = granted
    disk = _SlowDisk()
    monkeypatch.setattr(cache_module, "os", disk)
    with open_dataset(DATASET, client=researcher.client) as ds:
        got = pa.Table.from_batches(list(_read_until_every_row(ds, table.num_rows, disk)))
    assert got.equals(table)
    assert not disk.timed_out
    assert len(disk.synced) == len(result.shards)  # every copy synced before the read ended


def test_a_cache_sync_failing_after_its_rows_were_read_still_fails_the_read(
    granted: tuple[pa.Table, PublishResult], researcher: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last shard's copy fails to sync (a full disk) after all its rows were handed out:
    the read does not end as if the cache held it."""
    table, result = granted
    disk = _SlowDisk(fail_digest=result.shards[-1].sha256)
    monkeypatch.setattr(cache_module, "os", disk)
    rows: list[int] = []
    with open_dataset(DATASET, client=researcher.client) as ds:
        batches = _read_until_every_row(ds, table.num_rows, disk)
        with pytest.raises(OSError, match="No space"):
            rows.extend(batch.num_rows for batch in batches)
    assert sum(rows) == table.num_rows  # verified rows, all of them, before the failure
    assert not disk.timed_out
