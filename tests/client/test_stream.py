"""Verified streaming against a real registry: round trip, tampering, revocation, no grant,
resumed downloads, a shared cache across processes, the cache budget, rollback."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from ostraca.client import open_dataset
from ostraca.client.api import RegistryClient
from ostraca.client.cache import BlobCache
from ostraca.client.config import load_config
from ostraca.client.publishing import PublishResult
from ostraca.protocol_spec import (
    AccessDeniedError,
    DigestMismatchError,
    RevokedError,
    RollbackError,
    VerificationError,
)

from .stream_helpers import (
    IdentityLike as Identity,
)
from .stream_helpers import (
    Proxy,
    batch_end_offsets,
    blob_file,
    flip_byte,
    grant_access,
    with_registry,
)
from .stream_helpers import (
    RegistryLike as Registry,
)

DATASET = "acme/books"
CHUNK = 64 * 1024
PublishFn = Callable[..., PublishResult]


def _table(rows: int = 6000, seed: int = 0) -> pa.Table:
    """Incompressible-ish text so shard sizes are predictable: ~100 bytes a row."""
    ids = list(range(seed * rows, (seed + 1) * rows))
    text = [hashlib.sha256(str(i).encode()).hexdigest() * 2 for i in ids]
    return pa.table({"id": pa.array(ids, pa.int64()), "text": text, "n": [i % 7 for i in ids]})


def _publish(publish_table: PublishFn, table: pa.Table | None = None) -> PublishResult:
    return publish_table(
        table if table is not None else _table(),
        dataset=DATASET,
        shard_bytes=4 * CHUNK,
        chunk_bytes=CHUNK,
        compression="none",
    )


@pytest.fixture
def granted(
    publish_table: PublishFn, publisher: Identity, researcher: Identity
) -> tuple[pa.Table, PublishResult]:
    table = _table()
    result = _publish(publish_table, table)
    assert len(result.shards) >= 3
    grant_access(publisher.client, researcher.client, DATASET)
    return table, result


def test_round_trip_byte_identical(
    granted: tuple[pa.Table, PublishResult], researcher: Identity
) -> None:
    table, result = granted
    with open_dataset(DATASET, client=researcher.client) as ds:
        got = ds.to_table()
        prov = ds.provenance
        assert list(ds.shard_rows) == [s.rows for s in result.shards]
        assert ds.schema == table.schema
    assert got.equals(table)
    assert prov.dataset == DATASET
    assert prov.version == 1
    assert prov.manifest_digest == result.digest
    assert prov.license == "CC-BY-4.0"
    cache = BlobCache(researcher.config.cache_path)
    for s in result.shards:
        path = cache.blob_path(s.sha256)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == s.sha256
    # Warm cache (memory-mapped), another order, a projection.
    with open_dataset(DATASET, client=researcher.client, columns=["text", "id"]) as ds:
        n = len(ds.shard_rows)
        order = list(reversed(range(n)))
        seen: dict[int, list[pa.RecordBatch]] = {}
        for index, batch in ds.read_shards(order):
            assert batch.schema.names == ["text", "id"]
            seen.setdefault(index, []).append(batch)
        assert list(seen) == order
        rebuilt = pa.Table.from_batches([b for i in range(n) for b in seen[i]])
    assert rebuilt.equals(table.select(["text", "id"]))


def test_no_grant_is_access_denied_with_request_hint(
    publish_table: PublishFn, researcher: Identity
) -> None:
    _publish(publish_table)
    with pytest.raises(AccessDeniedError) as info:
        open_dataset(DATASET, client=researcher.client)
    assert info.value.hint is not None
    assert f"ostraca request {DATASET} --purpose '...'" in info.value.hint


def _collect(batches: Any, into: list[tuple[int, pa.RecordBatch]]) -> BaseException | None:
    try:
        for item in batches:
            into.append(item)
    except (VerificationError, AccessDeniedError) as exc:
        return exc
    return None


@pytest.mark.parametrize("unit", ["chunk", "shard"])
def test_tampered_shard_yields_nothing_unverified(
    granted: tuple[pa.Table, PublishResult],
    researcher: Identity,
    registry_server: Registry,
    unit: str,
) -> None:
    table, result = granted
    victim = 1
    entry = result.shards[victim]
    path = blob_file(registry_server.data_dir, entry.sha256)
    original = path.read_bytes()
    offset = entry.bytes - 100  # in the shard's last chunk: earlier chunks verify fine
    flip_byte(path, offset)
    got: list[tuple[int, pa.RecordBatch]] = []
    with open_dataset(DATASET, client=researcher.client, verify=unit) as ds:  # type: ignore[arg-type]
        error = _collect(ds.read_shards(range(len(result.shards))), got)
    assert isinstance(error, DigestMismatchError)
    assert f"shard {victim}" in str(error)
    # Everything yielded is authentic: the exact batches of the original, in order.
    before = sum(s.rows for s in result.shards[:victim])
    rows = pa.Table.from_batches([b for _, b in got], schema=table.schema)
    assert rows.equals(table.slice(0, rows.num_rows))
    from_victim = [b for i, b in got if i == victim]
    # Nothing decoded from the tampered chunk (or after it): only batches that end before it.
    tampered_chunk_start = (offset // CHUNK) * CHUNK
    allowed = sum(1 for end in batch_end_offsets(original) if end <= tampered_chunk_start)
    if unit == "shard":
        assert from_victim == []
        assert rows.num_rows == before
    else:
        assert len(from_victim) <= allowed
    assert rows.num_rows < before + entry.rows
    # The tampered bytes never reached the cache under the shard's name.
    assert not BlobCache(researcher.config.cache_path).blob_path(entry.sha256).exists()


def test_revocation_stops_at_next_shard(
    granted: tuple[pa.Table, PublishResult], publisher: Identity, researcher: Identity
) -> None:
    _, result = granted
    got: list[tuple[int, pa.RecordBatch]] = []
    with open_dataset(DATASET, client=researcher.client, prefetch=2) as ds:
        stream = ds.read_shards(range(len(result.shards)))
        first = next(stream)
        got.append(first)
        assert first[0] == 0
        grant_id = ds.grant.digest
        publisher.client.revoke(grant_id, reason="test")
        error = _collect(stream, got)
    assert isinstance(error, RevokedError)
    assert {i for i, _ in got} == {0}


def test_interrupted_download_resumes_with_range(
    granted: tuple[pa.Table, PublishResult], researcher: Identity, registry: str
) -> None:
    table, _ = granted
    proxy = Proxy(registry, drop_after=CHUNK + 5000)
    try:
        config = with_registry(researcher.config, proxy.url)
        with (
            RegistryClient(config, key=researcher.key) as client,
            open_dataset(DATASET, client=client) as ds,
        ):
            got = ds.to_table()
    finally:
        proxy.close()
    assert got.equals(table)
    assert proxy.dropped == 1
    ranged = [r for r in proxy.requests if b"\r\nrange: bytes=" in r.lower()]
    assert any(not r.lower().endswith(b"range: bytes=0-0") for r in ranged), proxy.requests


def _child_stream(home: str, registry: str, out: Any) -> None:
    config = load_config(home=Path(home), registry=registry)
    with open_dataset(DATASET, config=config) as ds:
        table = ds.to_table()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    out.put(hashlib.sha256(table.to_pydict().__repr__().encode()).hexdigest())


def test_two_processes_share_a_cache(
    granted: tuple[pa.Table, PublishResult], researcher: Identity, registry: str
) -> None:
    table, result = granted
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_child_stream, args=(str(researcher.home), registry, out))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    expected = hashlib.sha256(table.to_pydict().__repr__().encode()).hexdigest()
    assert [out.get(timeout=5), out.get(timeout=5)] == [expected, expected]
    cache = BlobCache(researcher.config.cache_path)
    for s in result.shards:
        assert hashlib.sha256(cache.blob_path(s.sha256).read_bytes()).hexdigest() == s.sha256
    assert not list((researcher.config.cache_path / "tmp").glob("*.partial"))


def test_cache_budget_is_respected(
    granted: tuple[pa.Table, PublishResult], researcher: Identity
) -> None:
    table, result = granted
    budget = sum(s.bytes for s in result.shards[:2]) + 10
    config = replace(researcher.config, cache_bytes=budget)
    with (
        RegistryClient(config, key=researcher.key) as client,
        open_dataset(DATASET, client=client, config=config) as ds,
    ):
        assert ds.to_table().equals(table)
        info = ds.cache.info()
    assert info.bytes <= budget
    assert info.blobs >= 1
    last = result.shards[-1].sha256
    assert BlobCache(config.cache_path).blob_path(last).exists()  # most recent stays


class _StaleListing(httpx.BaseTransport):
    """The real registry, except that its deprecation list names version 1 as the newest."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()

    def close(self) -> None:
        self._inner.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if not request.url.path.endswith("/deprecations"):
            return response
        body = json.loads(response.read())
        response.close()
        body.update(latest_version=1, current_version=1)
        return httpx.Response(200, json=body)


def test_rollback_to_older_manifest_is_refused(
    publish_table: PublishFn, publisher: Identity, researcher: Identity, registry: str
) -> None:
    _publish(publish_table, _table(seed=0))
    grant_access(publisher.client, researcher.client, DATASET)
    _publish(publish_table, _table(seed=1))
    with open_dataset(DATASET, client=researcher.client) as ds:
        assert ds.provenance.version == 2
    # A stale or malicious mirror answers "latest" with version 1, and has no deprecations
    # route (a registry from before them: every version is then current).
    proxy = Proxy(
        registry,
        rewrite=lambda b: b.replace(b"/versions/latest/manifest", b"/versions/1/manifest").replace(
            b"/deprecations ", b"/deprecations-gone "
        ),
    )
    try:
        config = with_registry(researcher.config, proxy.url)
        with RegistryClient(config, key=researcher.key) as client, pytest.raises(RollbackError):
            open_dataset(DATASET, client=client)
    finally:
        proxy.close()
    # A consistent stale mirror: its deprecation list says the newest version is 1 too.
    with (
        RegistryClient(researcher.config, transport=_StaleListing()) as client,
        pytest.raises(RollbackError),
    ):
        open_dataset(DATASET, client=client)
    # Asking for version 1 explicitly is fine: it is on the trusted chain.
    with open_dataset(DATASET, client=researcher.client, version=1) as ds:
        assert ds.provenance.version == 1
