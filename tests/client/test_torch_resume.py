"""Resume through the PyTorch adapter, streamed verified from a real registry over HTTP.

``acme/rows`` (encrypted, the default) is 12,000 rows in uneven shards of several record batches
each, so items span batches and shards. An uninterrupted epoch is the reference order; a loader
stopped after any number of items and restored from its ``state_dict`` in a fresh dataset must
yield exactly the rest, in the same order: in process, and with 2 ranks × 2 DataLoader worker
processes (each worker opening its own verified stream). An unshuffled resume opens only the
shards from the resume point on; a byte changed on the registry after the resume point is still
refused."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ostraca.client.publishing import PublishResult
from ostraca.client.stream import VerifiedDataset, open_dataset
from ostraca.client.torch import Item, ShardDataLoader, ShardDataset
from ostraca.protocol_spec import VerificationError

from ..registry_helpers import Registry
from .client_helpers import Identity
from .stream_helpers import blob_file, flip_byte, grant_access

DATASET = "acme/rows"
ROWS = 12_000
Opener = Callable[[], VerifiedDataset]


def _table() -> pa.Table:
    rng = np.random.default_rng(5)
    ids = np.arange(ROWS, dtype=np.int64)
    pad = [b"p" * int(n) for n in rng.integers(0, 40, ROWS)]  # uneven shards
    return pa.table({"id": ids, "pad": pa.array(pad, pa.binary())})


@pytest.fixture
def published(
    publish_table: Callable[..., PublishResult], publisher: Identity, researcher: Identity
) -> PublishResult:
    result = publish_table(
        _table(), dataset=DATASET, shard_bytes=65536, chunk_bytes=65536, compression="none"
    )
    rows = [s.rows for s in result.shards]
    assert len(rows) >= 5
    assert len(set(rows)) > 1
    grant_access(publisher.client, researcher.client, DATASET)
    return result


def opener(researcher: Identity, cache: Path) -> Opener:
    """A picklable factory: each DataLoader worker opens (and verifies) its own stream."""
    config = replace(researcher.config, cache_dir=cache)
    return functools.partial(open_dataset, DATASET, config=config)


@pytest.fixture
def make() -> Iterator[Callable[..., ShardDataset]]:
    """``make(source, **options)``: a dataset, closed (with the source it opened) afterwards."""
    with ExitStack() as stack:

        def _make(source: Opener | VerifiedDataset, **kw: object) -> ShardDataset:
            args: dict[str, object] = {"seed": 11, "block_rows": 2500, "batch_rows": 300}
            args.update(kw)
            return stack.enter_context(ShardDataset(source, **args))  # type: ignore[arg-type]

        yield _make


def head(loader: Iterable[Item], n: int) -> list[int]:
    """The first ``n`` items' ids; the iteration is then closed (its workers stop)."""
    it = iter(loader)
    try:
        return ids(itertools.islice(it, n))
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def ids(items: Iterable[Item]) -> list[int]:
    out: list[int] = []
    for item in items:
        assert isinstance(item, pa.RecordBatch)
        out.extend(item.column("id").to_pylist())
    return out


@pytest.mark.usefixtures("published")
@pytest.mark.parametrize("shuffle", [False, True])
def test_in_process_resume_at_several_points(
    researcher: Identity, tmp_path: Path, make: Callable[..., ShardDataset], shuffle: bool
) -> None:
    source = opener(researcher, tmp_path / "cache")
    items = list(make(source, shuffle=shuffle))
    full = ids(items)
    assert sorted(full) == list(range(ROWS))
    if not shuffle:
        assert full == list(range(ROWS))
    for cut in (1, 8, 9, 10, len(items) // 2, len(items) - 1):  # 9 items a block
        ds = make(source, shuffle=shuffle)
        first = head(ds, cut)
        resumed = make(opener(researcher, tmp_path / f"cold-{cut}"), shuffle=shuffle)
        resumed.load_state_dict(ds.state_dict())
        assert first + ids(resumed) == full, f"cut after {cut} items"


@pytest.mark.usefixtures("published")
@pytest.mark.parametrize("shuffle", [False, True])
def test_two_ranks_two_workers_resume_exactly(
    researcher: Identity, tmp_path: Path, make: Callable[..., ShardDataset], shuffle: bool
) -> None:
    source = opener(researcher, tmp_path / "cache")
    seen: list[int] = []
    for rank in (0, 1):
        kw = {"rank": rank, "world_size": 2, "shuffle": shuffle}
        full = ids(ShardDataLoader(make(source, **kw), num_workers=2))
        seen += full
        for cut in (3, 10):
            loader = ShardDataLoader(make(source, **kw), num_workers=2)
            first = head(loader, cut)
            again = ShardDataLoader(make(source, **kw), num_workers=2)
            again.load_state_dict(loader.state_dict())
            assert first + ids(again) == full, f"rank {rank}, cut after {cut} items"
    assert sorted(seen) == list(range(ROWS))  # every row once across ranks × workers


def test_unshuffled_resume_reads_only_from_the_resume_point_and_still_verifies(
    published: PublishResult,
    researcher: Identity,
    registry_server: Registry,
    tmp_path: Path,
    make: Callable[..., ShardDataset],
) -> None:
    shards = published.shards
    starts = list(itertools.accumulate((s.rows for s in shards), initial=0))
    ds = make(opener(researcher, tmp_path / "first"), shuffle=False, block_rows=ROWS)
    cut = starts[3] // 300 + 1  # the next item starts inside shard 3
    first = head(ds, cut)
    flip_byte(blob_file(registry_server.data_dir, shards[4].sha256), shards[4].bytes // 2)

    source = opener(researcher, tmp_path / "cold")()
    resumed = make(source, shuffle=False, block_rows=ROWS)
    resumed.load_state_dict(ds.state_dict())
    got: list[int] = []

    def drain() -> None:
        for item in resumed:
            got.extend(ids([item]))

    with pytest.raises(VerificationError, match="shard 4"):
        drain()
    source.close()
    assert first + got == list(range(len(first) + len(got)))  # the rest, in order, to shard 4
    assert starts[4] - 300 <= len(first) + len(got) <= starts[5]
    fetched = {i for i, s in enumerate(shards) if source.cache.blob_path(s.sha256).exists()}
    assert 3 in fetched
    assert not fetched & {0, 1, 2}  # the shards before the resume point were never opened
