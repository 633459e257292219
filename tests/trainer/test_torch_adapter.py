"""The PyTorch adapter: exactly-once split, deterministic shuffle, exact mid-epoch resume.

The rows come from ``acme/ids`` (``ids_table``: 254 rows in uneven shards), published to a real
registry and read back verified: from the pulled copy (``open_pulled``), and where marked, also
streamed from the registry (``open_dataset``)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from torch.multiprocessing.spawn import spawn

from ostraca.client.local import PulledDataset
from ostraca.client.source import ShardSource
from ostraca.client.torch import Item, ShardDataLoader, ShardDataset

from .spawned import ddp_adapter_rank
from .trainer_testlib import TrainerData

TOTAL = 254


def ids(items: list[Item]) -> list[int]:
    out: list[int] = []
    for item in items:
        if isinstance(item, dict):
            out.extend(item["id"].tolist())
        else:
            out.extend(item.column("id").to_pylist())
    return out


@pytest.fixture
def source(data: TrainerData) -> PulledDataset:
    return data.pulled(data.ids)


@pytest.fixture
def shard_rows(source: PulledDataset) -> list[int]:
    rows = list(source.shard_rows)
    assert sum(rows) == TOTAL
    assert len(rows) >= 5
    assert len(set(rows)) > 1  # uneven
    return rows


def make(source: ShardSource, **kw: object) -> ShardDataset:
    args: dict[str, object] = {
        "seed": 7,
        "block_rows": 40,
        "batch_rows": 16,
        "columns": ["id", "x"],
    }
    args.update(kw)
    return ShardDataset(source, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["pulled", "streamed"])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_every_row_once_per_epoch_across_ranks(data: TrainerData, world: int, how: str) -> None:
    with data.stream(data.ids) if how == "streamed" else data.pulled(data.ids) as source:
        seen = []
        for rank in range(world):
            seen += ids(list(make(source, rank=rank, world_size=world)))
    assert sorted(seen) == list(range(TOTAL))


def test_same_seed_and_epoch_same_order_other_epoch_other_order(
    source: PulledDataset, shard_rows: list[int]
) -> None:
    a, b = make(source), make(source)
    first = ids(list(a))
    assert first == ids(list(b))
    assert first != list(range(sum(shard_rows)))  # rows really are shuffled
    b.set_epoch(1)
    second = ids(list(b))
    assert second != first
    assert sorted(second) == sorted(first)
    assert ids(list(make(source, seed=8))) != first


def test_block_shuffle_is_bounded(source: PulledDataset, shard_rows: list[int]) -> None:
    # With shuffle off the stream is the manifest order; with it on, a row moves only within
    # its block of block_rows rows of the (permuted) shard sequence.
    plain = ids(list(make(source, shuffle=False)))
    assert plain == list(range(sum(shard_rows)))
    ds = make(source)
    order = ds.shard_order(0)
    stream = [i for s in order for i in range(sum(shard_rows[:s]), sum(shard_rows[: s + 1]))]
    got = ids(list(ds))
    for lo in range(0, len(got), 40):
        assert sorted(got[lo : lo + 40]) == sorted(stream[lo : lo + 40])


@pytest.mark.parametrize("cut", [0, 1, 3, 5, 9, 15])
def test_resume_in_process_yields_exactly_the_rest(source: PulledDataset, cut: int) -> None:
    full = ids(list(make(source, rank=1, world_size=2)))
    ds = make(source, rank=1, world_size=2)
    it = iter(ds)
    head = ids(list(itertools.islice(it, cut)))
    state = ds.state_dict()
    resumed = make(source, rank=1, world_size=2)
    resumed.load_state_dict(state)
    assert head + ids(list(resumed)) == full


def test_resume_with_two_dataloader_workers(source: PulledDataset, shard_rows: list[int]) -> None:
    full = ids(list(ShardDataLoader(make(source), num_workers=2)))
    assert sorted(full) == list(range(sum(shard_rows)))
    for cut in (3, 6):
        loader = ShardDataLoader(make(source), num_workers=2)
        head = ids(list(itertools.islice(iter(loader), cut)))
        state = loader.state_dict()
        again = ShardDataLoader(make(source), num_workers=2)
        again.load_state_dict(state)
        assert head + ids(list(again)) == full


def test_resume_refuses_another_worker_count(source: PulledDataset) -> None:
    ds = make(source)
    next(iter(ds))
    other = ShardDataLoader(make(source), num_workers=2)
    other.load_state_dict(ds.state_dict())
    with pytest.raises(ValueError, match="worker"):
        list(other)


def test_torch_output_is_whole_batch_tensors(source: PulledDataset) -> None:
    items = list(make(source, output="torch", shuffle=False))
    assert all(isinstance(i, dict) for i in items)
    first = items[0]
    assert isinstance(first, dict)
    assert first["id"].dtype == torch.int64
    assert first["id"].shape == (16,)
    assert torch.equal(first["x"], first["id"].double() / 2)


def test_shards_read_follows_progress(source: PulledDataset, shard_rows: list[int]) -> None:
    ds = make(source, shuffle=False, block_rows=10, batch_rows=10)
    it = iter(ds)
    next(it)
    assert ds.shards_read() == {0}
    assert 10 <= shard_rows[0] < 50 <= shard_rows[0] + shard_rows[1]
    list(itertools.islice(it, 4))  # rows 10..49 → shard 1 starts at row shard_rows[0]
    assert ds.shards_read() == {0, 1}


def test_two_ranks_two_workers_see_every_row_once(
    data: TrainerData, source: PulledDataset, tmp_path: Path, shard_rows: list[int]
) -> None:
    init = f"file://{tmp_path / 'rendezvous'}"
    args = (2, str(source.directory), str(data.researcher.home), init, str(tmp_path))
    spawn(ddp_adapter_rank, args=args, nprocs=2)  # type: ignore[no-untyped-call]
    per_rank = [(tmp_path / f"rank{r}.txt").read_text().split("\n") for r in range(2)]
    for epoch in (0, 1):
        rows = [int(i) for r in range(2) for i in per_rank[r][epoch].split(",") if i]
        assert sorted(rows) == list(range(sum(shard_rows))), f"epoch {epoch}"
    assert per_rank[0][0] != per_rank[0][1]  # a new epoch, a new order


def test_unknown_shard_index_is_refused(source: PulledDataset) -> None:
    with pytest.raises(ValueError, match="distinct"):
        make(source, shards=[0, 99])
    assert pa.types.is_int64(source.schema.field("id").type)
    assert os.path.isdir(source.directory)
