"""The PyTorch adapter: exactly-once split, deterministic shuffle, exact mid-epoch resume."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pyarrow as pa
import pytest
import torch
import torch.distributed as dist
from torch.multiprocessing.spawn import spawn
from torch.utils.data import DataLoader

from ostraca.client.torch import Item, ShardDataLoader, ShardDataset

from .trainer_testlib import DirSource, id_shards

ROWS = [37, 50, 23, 64, 41, 9, 30]  # 254 rows in 7 uneven shards


def ids(items: list[Item]) -> list[int]:
    out: list[int] = []
    for item in items:
        if isinstance(item, dict):
            out.extend(item["id"].tolist())
        else:
            out.extend(item.column("id").to_pylist())
    return out


@pytest.fixture
def source(tmp_path: Path) -> DirSource:
    return DirSource(id_shards(tmp_path / "ids", ROWS))


def make(source: DirSource, **kw: object) -> ShardDataset:
    args: dict[str, object] = {"seed": 7, "block_rows": 40, "batch_rows": 16}
    args.update(kw)
    return ShardDataset(source, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_every_row_once_per_epoch_across_ranks(source: DirSource, world: int) -> None:
    seen = []
    for rank in range(world):
        seen += ids(list(make(source, rank=rank, world_size=world)))
    assert sorted(seen) == list(range(sum(ROWS)))


def test_same_seed_and_epoch_same_order_other_epoch_other_order(source: DirSource) -> None:
    a, b = make(source), make(source)
    first = ids(list(a))
    assert first == ids(list(b))
    assert first != list(range(sum(ROWS)))  # rows really are shuffled
    b.set_epoch(1)
    second = ids(list(b))
    assert second != first
    assert sorted(second) == sorted(first)
    assert ids(list(make(source, seed=8))) != first


def test_block_shuffle_is_bounded(source: DirSource) -> None:
    # With shuffle off the stream is the manifest order; with it on, a row moves only within
    # its block of block_rows rows of the (permuted) shard sequence.
    plain = ids(list(make(source, shuffle=False)))
    assert plain == list(range(sum(ROWS)))
    ds = make(source)
    order = ds.shard_order(0)
    stream = [i for s in order for i in range(sum(ROWS[:s]), sum(ROWS[: s + 1]))]
    got = ids(list(ds))
    for lo in range(0, len(got), 40):
        assert sorted(got[lo : lo + 40]) == sorted(stream[lo : lo + 40])


@pytest.mark.parametrize("cut", [0, 1, 3, 5, 9, 15])
def test_resume_in_process_yields_exactly_the_rest(source: DirSource, cut: int) -> None:
    full = ids(list(make(source, rank=1, world_size=2)))
    ds = make(source, rank=1, world_size=2)
    it = iter(ds)
    head = ids(list(itertools.islice(it, cut)))
    state = ds.state_dict()
    resumed = make(source, rank=1, world_size=2)
    resumed.load_state_dict(state)
    assert head + ids(list(resumed)) == full


def test_resume_with_two_dataloader_workers(source: DirSource) -> None:
    full = ids(list(ShardDataLoader(make(source), num_workers=2)))
    assert sorted(full) == list(range(sum(ROWS)))
    for cut in (3, 6):
        loader = ShardDataLoader(make(source), num_workers=2)
        head = ids(list(itertools.islice(iter(loader), cut)))
        state = loader.state_dict()
        again = ShardDataLoader(make(source), num_workers=2)
        again.load_state_dict(state)
        assert head + ids(list(again)) == full


def test_resume_refuses_another_worker_count(source: DirSource) -> None:
    ds = make(source)
    next(iter(ds))
    other = ShardDataLoader(make(source), num_workers=2)
    other.load_state_dict(ds.state_dict())
    with pytest.raises(ValueError, match="worker"):
        list(other)


def test_torch_output_is_whole_batch_tensors(source: DirSource) -> None:
    items = list(make(source, output="torch", shuffle=False))
    assert all(isinstance(i, dict) for i in items)
    first = items[0]
    assert isinstance(first, dict)
    assert first["id"].dtype == torch.int64
    assert first["id"].shape == (16,)
    assert torch.equal(first["x"], first["id"].double() / 2)


def test_shards_read_follows_progress(source: DirSource) -> None:
    ds = make(source, shuffle=False, block_rows=10, batch_rows=10)
    it = iter(ds)
    next(it)
    assert ds.shards_read() == {0}
    list(itertools.islice(it, 4))  # rows 10..49 → shard 1 starts at row 37
    assert ds.shards_read() == {0, 1}


def _ddp_worker(rank: int, world: int, root: str, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        ds = ShardDataset(DirSource(Path(root)), seed=3, block_rows=40, batch_rows=16)
        assert (ds.rank, ds.world_size) == (rank, world)
        seen = []
        for epoch in (0, 1):
            ds.set_epoch(epoch)
            loader = DataLoader(ds, batch_size=None, num_workers=2)
            got = [b.column("id").to_pylist() for b in loader]
            seen.append(",".join(str(i) for batch in got for i in batch))
        Path(out, f"rank{rank}.txt").write_text("\n".join(seen))
    finally:
        dist.destroy_process_group()


def test_two_ranks_two_workers_see_every_row_once(source: DirSource, tmp_path: Path) -> None:
    init = f"file://{tmp_path / 'rendezvous'}"
    spawn(_ddp_worker, args=(2, str(source.root), init, str(tmp_path)), nprocs=2)  # type: ignore[no-untyped-call]
    per_rank = [(tmp_path / f"rank{r}.txt").read_text().split("\n") for r in range(2)]
    for epoch in (0, 1):
        rows = [int(i) for r in range(2) for i in per_rank[r][epoch].split(",") if i]
        assert sorted(rows) == list(range(sum(ROWS))), f"epoch {epoch}"
    assert per_rank[0][0] != per_rank[0][1]  # a new epoch, a new order


def test_unknown_shard_index_is_refused(source: DirSource) -> None:
    with pytest.raises(ValueError, match="distinct"):
        make(source, shards=[0, 99])
    assert pa.types.is_int64(source.schema.field("id").type)
    assert os.path.isdir(source.root)
