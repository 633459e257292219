"""The blob cache alone: atomic commits, size re-check, LRU budget, locking across processes."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from ostraca.client.cache import BlobCache
from ostraca.protocol_spec import MalformedError


def _blob(n: int, seed: int) -> tuple[str, bytes]:
    data = hashlib.sha256(str(seed).encode()).digest() * (n // 32 + 1)
    data = data[:n]
    return hashlib.sha256(data).hexdigest(), data


def test_put_open_roundtrip_and_no_partial_under_final_name(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path, budget=10_000)
    digest, data = _blob(1000, 1)
    assert cache.open(digest, 1000) is None
    partial = cache.acquire(digest, 1000)
    assert partial is not None
    os.pwrite(partial.fd, data[:500], 0)
    # Half written: nothing under the final name, the temp file is already full-size (sparse).
    assert not cache.blob_path(digest).exists()
    assert partial.path.stat().st_size == 1000
    os.pwrite(partial.fd, data[500:], 500)
    final = partial.commit()
    assert final == cache.blob_path(digest)
    assert final.read_bytes() == data
    assert not partial.path.exists()
    fh = cache.open(digest, 1000)
    assert fh is not None
    with fh:
        assert fh.read() == data
    # Now cached: acquire says so instead of handing out a writer.
    assert cache.acquire(digest, 1000) is None


def test_wrong_size_blob_is_dropped(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path, budget=10_000)
    digest, data = _blob(100, 2)
    cache.put(digest, data)
    cache.blob_path(digest).write_bytes(data[:-1])  # something outside the cache truncated it
    assert cache.open(digest, 100) is None
    assert not cache.blob_path(digest).exists()


def test_abort_keeps_partial_only_when_asked(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path, budget=10_000)
    digest, _ = _blob(100, 3)
    p = cache.acquire(digest, 100)
    assert p is not None
    p.abort(keep=True)
    assert cache.partial_path(digest).exists()
    p = cache.acquire(digest, 100)
    assert p is not None
    p.abort()
    assert not cache.partial_path(digest).exists()


def test_bad_digest_refused(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    with pytest.raises(MalformedError):
        cache.blob_path("../../etc/passwd")


def test_lru_eviction_respects_budget(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path, budget=3000)
    blobs = [_blob(1000, i) for i in range(5)]
    for i, (digest, data) in enumerate(blobs):
        cache.put(digest, data)
        os.utime(cache.blob_path(digest), (1000 + i, 1000 + i))
    # Use blob 0: it becomes the most recently used.
    fh = cache.open(blobs[0][0], 1000)
    assert fh is not None
    fh.close()
    freed = cache.evict()
    assert freed == 2000
    info = cache.info()
    assert info.bytes <= 3000
    assert info.blobs == 3
    present = {d for d, _ in blobs if cache.blob_path(d).exists()}
    assert present == {blobs[0][0], blobs[3][0], blobs[4][0]}
    # A protected blob survives even when it is the oldest.
    cache.budget = 1000
    os.utime(cache.blob_path(blobs[3][0]), (1, 1))
    cache.evict(protect=frozenset({blobs[3][0]}))
    assert {d for d, _ in blobs if cache.blob_path(d).exists()} == {blobs[3][0]}


def test_clear(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path, budget=10_000)
    digest, data = _blob(500, 9)
    cache.put(digest, data)
    assert cache.clear() == 500
    assert cache.info().blobs == 0


def _writer(root: str, digest: str, data: bytes, out: mp.Queue[str]) -> None:
    cache = BlobCache(Path(root), budget=10**9)
    partial = cache.acquire(digest, len(data))
    if partial is None:
        out.put("hit")
        return
    # Write slowly so that the other process really has to wait on the lock.
    for off in range(0, len(data), 4096):
        os.pwrite(partial.fd, data[off : off + 4096], off)
        time.sleep(0.001)
    partial.commit(durable=False)
    out.put("wrote")


def test_two_processes_one_download(tmp_path: Path) -> None:
    digest, data = _blob(200_000, 5)
    ctx = mp.get_context("spawn")
    out: mp.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), digest, data, out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    results = sorted(out.get(timeout=5) for _ in procs)
    assert results == ["hit", "wrote"]
    assert BlobCache(tmp_path).blob_path(digest).read_bytes() == data
