"""PyTorch adapter: an ``IterableDataset`` over a verified :class:`~.source.ShardSource`.

How a dataset version is split, shuffled and resumed
----------------------------------------------------
* **Shard order.** Each epoch the selected shards are permuted by a generator seeded from
  ``(seed, epoch)`` — the same permutation on every rank and worker (identity if ``shuffle`` is
  off).
* **Split.** There are ``world_size × num_workers`` *streams*; stream
  ``g = rank × num_workers + worker`` takes the permuted shards ``g, g + S, g + 2S, …``
  (round robin, ``S`` streams). Every shard belongs to exactly one stream, so every row is read
  exactly once per epoch across ranks × workers. When ``S`` does not divide the shard count the
  first ``count % S`` streams get one shard more, and streams hold different row counts: a
  consumer that needs the same number of steps on every rank iterates epochs without end (as the
  trainer does) rather than stopping when one rank runs out.
* **Block shuffle.** A stream's rows (its shards concatenated in order) are cut into blocks of
  ``block_rows`` rows; each block is held in memory, its rows permuted by a generator seeded
  from ``(seed, epoch, stream, block)`` with one vectorised Arrow ``take``, and then cut into
  items of at most ``batch_rows`` rows. Unshuffled, items are cut at the same boundaries.
* **Items.** An item is a ``pyarrow.RecordBatch`` (``output="arrow"``) or a ``dict`` of tensors
  built from whole columns (``output="torch"``); nothing is done per row in Python.
* **State.** ``state_dict()`` records the epoch and how many items each stream of this rank has
  handed out. Block and item boundaries follow from the manifest's per-shard row counts alone,
  so :meth:`load_state_dict` resumes without reading what was handed out: unshuffled, it turns
  the count into (shard, row within the shard), opens only that shard and the ones after it and
  slices off the rows before; shuffled, it starts at the shard that holds the current block's
  first row, rebuilds that block and gathers only the rows of the items not yet handed out.
  Either way the resumed iteration yields exactly the remaining items, in the same order.
* **Memory.** Unshuffled, items are slices of the source's batches (copied only where an item
  spans two batches): nothing is held beyond the source's own read-ahead. Shuffled, one block.

In-process iteration (``for item in dataset``) tracks its own state. With DataLoader worker
processes the main process cannot see inside the workers, so use :class:`ShardDataLoader`, which
tags each item with its stream and keeps the count in the main process (it also rotates worker
ids on resume, so that DataLoader's round robin continues where it stopped). A plain
``DataLoader(dataset, batch_size=None, num_workers=N)`` still splits exactly once; it is only
not resumable mid-epoch.

Sources may hold connections: pass a zero-argument callable that opens one (``source_factory``)
and each worker process opens its own; the source opened in the main process (for metadata) is
never pickled into workers.
"""

from __future__ import annotations

import bisect
import copy
import itertools
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TypeAlias, cast

import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .source import Provenance, ShardSource

Item: TypeAlias = pa.RecordBatch | dict[str, torch.Tensor]
SourceFactory: TypeAlias = Callable[[], ShardSource]

__all__ = ["Item", "ShardDataLoader", "ShardDataset", "SourceFactory", "batch_to_tensors"]


def batch_to_tensors(batch: pa.RecordBatch) -> dict[str, torch.Tensor]:
    """Whole-column conversion: numeric columns → 1-D tensors, fixed-size lists → 2-D tensors."""
    out: dict[str, torch.Tensor] = {}
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        if col.null_count:
            raise TypeError(f"column {name!r} has nulls; use output='arrow'")
        typ = col.type
        if pa.types.is_fixed_size_list(typ) and _is_numeric(typ.value_type):
            values = col.flatten().to_numpy(zero_copy_only=False)
            out[name] = torch.from_numpy(np.array(values)).reshape(len(col), typ.list_size)
        elif _is_numeric(typ):
            out[name] = torch.from_numpy(np.array(col.to_numpy(zero_copy_only=False)))
        else:
            raise TypeError(f"column {name!r} of type {typ} has no tensor form; use output='arrow'")
    return out


def _is_numeric(typ: pa.DataType) -> bool:
    return bool(pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ))


def _default_rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardDataset(IterableDataset[Item]):
    """Rows of a verified dataset version, split across ranks and workers, resumable.

    ``source`` is an opened :class:`ShardSource` (pickled into DataLoader workers as it is) or
    a zero-argument callable that opens one (called once in the main process for metadata and
    once in each worker). ``shards`` restricts the dataset to those shard indices (e.g. to hold
    some out for evaluation). ``rank``/``world_size`` default to ``torch.distributed``'s.
    """

    def __init__(
        self,
        source: ShardSource | SourceFactory,
        *,
        columns: Sequence[str] | None = None,
        shards: Sequence[int] | None = None,
        seed: int = 0,
        shuffle: bool = True,
        block_rows: int = 65_536,
        batch_rows: int = 1024,
        output: Literal["arrow", "torch"] = "arrow",
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        if block_rows < 1 or batch_rows < 1:
            raise ValueError("block_rows and batch_rows must be positive")
        self._factory: SourceFactory | None = None
        self._source: ShardSource | None = None
        if hasattr(source, "read_shards"):
            self._source = cast(ShardSource, source)
        else:
            self._factory = source
        rows = list(self._opened().shard_rows)
        self._shard_rows = rows
        selected = list(range(len(rows))) if shards is None else list(shards)
        if len(set(selected)) != len(selected) or not all(0 <= s < len(rows) for s in selected):
            raise ValueError(f"shards must be distinct indices in [0, {len(rows)})")
        self._shards = selected
        self._columns = None if columns is None else list(columns)
        self.seed = seed
        self.shuffle = shuffle
        self.block_rows = block_rows
        self.batch_rows = batch_rows
        self.output = output
        default_rank, default_world = _default_rank_world()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world size {self.world_size}")
        self._epoch = 0
        self._num_workers = 1
        self._consumed = [0]
        self._rotation = 0
        self._finished = False  # the last iteration ran to the end: the next one replays

    # ── source handling ─────────────────────────────────────────────────────────────────────
    def _opened(self) -> ShardSource:
        if self._source is None:
            assert self._factory is not None
            self._source = self._factory()
        return self._source

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._factory is not None:
            state["_source"] = None  # each worker opens its own
        return state

    def close(self) -> None:
        """Close the source this dataset opened itself (from a factory); one passed in opened
        is the caller's to close. Iterating again opens a fresh one."""
        if self._factory is not None and self._source is not None:
            close = getattr(self._source, "close", None)
            self._source = None
            if close is not None:
                close()

    def __enter__(self) -> ShardDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def provenance(self) -> Provenance:
        return self._opened().provenance

    @property
    def shards(self) -> list[int]:
        """The shard indices this dataset reads (all ranks together)."""
        return list(self._shards)

    @property
    def num_rows(self) -> int:
        """Rows per epoch, all ranks and workers together."""
        return sum(self._shard_rows[s] for s in self._shards)

    # ── epoch and state ─────────────────────────────────────────────────────────────────────
    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate; a different epoch starts from its beginning."""
        if epoch != self._epoch:
            self._epoch = epoch
            self._finished = False
            self._consumed = [0] * self._num_workers
            self._rotation = 0

    def state_dict(self) -> dict[str, Any]:
        """Where this rank stands: epoch, items handed out per stream of this rank."""
        return {
            "epoch": self._epoch,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "num_workers": self._num_workers,
            "consumed": list(self._consumed),
            "rotation": self._rotation,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (same seed, rank, world size; same worker count to iterate)."""
        if (state["seed"], state["rank"], state["world_size"]) != (
            self.seed,
            self.rank,
            self.world_size,
        ):
            raise ValueError(
                "state was saved with another seed, rank or world size "
                f"({state['seed']}, {state['rank']}/{state['world_size']} vs "
                f"{self.seed}, {self.rank}/{self.world_size})"
            )
        self._epoch = int(state["epoch"])
        self._num_workers = int(state["num_workers"])
        self._consumed = [int(c) for c in state["consumed"]]
        self._rotation = int(state["rotation"])
        self._finished = False
        if len(self._consumed) != self._num_workers:
            raise ValueError("state has a consumed count per worker; counts and workers differ")

    def _prepare(self, num_workers: int) -> None:
        """Set the worker count used for the next iteration (keeps progress if unchanged)."""
        if self._finished:
            self._consumed = [0] * self._num_workers
            self._rotation = 0
            self._finished = False
        if num_workers != self._num_workers:
            if any(self._consumed):
                raise ValueError(
                    f"cannot resume a stream saved with {self._num_workers} worker(s) using "
                    f"{num_workers}: the split across workers would change"
                )
            self._num_workers = num_workers
            self._consumed = [0] * num_workers
            self._rotation = 0

    # ── the plan: which rows a stream reads, cut into blocks and items ──────────────────────
    def shard_order(self, epoch: int) -> list[int]:
        """The epoch's shard order, identical on every rank and worker."""
        if not self.shuffle:
            return list(self._shards)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))
        return [self._shards[i] for i in rng.permutation(len(self._shards))]

    def stream_shards(self, epoch: int, stream: int, streams: int) -> list[int]:
        """Shards of stream ``stream`` of ``streams`` in ``epoch`` (round robin over the order)."""
        return self.shard_order(epoch)[stream::streams]

    def _blocks(self, shards: Sequence[int]) -> list[tuple[int, int]]:
        total = sum(self._shard_rows[s] for s in shards)
        return [(lo, min(lo + self.block_rows, total)) for lo in range(0, total, self.block_rows)]

    def _items_in(self, block: tuple[int, int]) -> int:
        return -(-(block[1] - block[0]) // self.batch_rows)

    def _locate(self, blocks: Sequence[tuple[int, int]], consumed: int) -> tuple[int, int]:
        """(block index, item within block) of the item after ``consumed`` items."""
        for k, block in enumerate(blocks):
            n = self._items_in(block)
            if consumed < n:
                return k, consumed
            consumed -= n
        return len(blocks), 0

    def shards_read(self, state: dict[str, Any] | None = None) -> set[int]:
        """Shards this rank has read rows from, up to ``state`` (default: now).

        Counts every shard overlapping a block that was started; assumes iteration began at
        epoch 0, so a later epoch means every selected shard was read.
        """
        st = self.state_dict() if state is None else state
        if st["epoch"] > 0:
            return set(self._shards)
        nw = st["num_workers"]
        streams = st["world_size"] * nw
        out: set[int] = set()
        for w, n in enumerate(st["consumed"]):
            if n == 0:
                continue
            shards = self.stream_shards(0, st["rank"] * nw + w, streams)
            blocks = self._blocks(shards)
            k, _ = self._locate(blocks, n - 1)
            end = blocks[k][1]
            starts = list(itertools.accumulate((self._shard_rows[s] for s in shards), initial=0))
            out.update(s for s, lo in zip(shards, starts, strict=False) if lo < end)
        return out

    # ── iteration ───────────────────────────────────────────────────────────────────────────
    def _stream_items(
        self, source: ShardSource, epoch: int, stream: int, streams: int, skip: int
    ) -> Iterator[pa.RecordBatch]:
        shards = self.stream_shards(epoch, stream, streams)
        blocks = self._blocks(shards)
        k0, i0 = self._locate(blocks, skip)
        if k0 >= len(blocks):
            return
        # Resume position: the first row still needed (unshuffled: the next item's first row;
        # shuffled: the first row of the block it lies in), as shard + row within the shard.
        first_row = blocks[k0][0] + (0 if self.shuffle else i0 * self.batch_rows)
        starts = list(itertools.accumulate((self._shard_rows[s] for s in shards), initial=0))
        p = bisect.bisect_right(starts, first_row) - 1
        rows = _Rows(source.read_shards(shards[p:], columns=self._columns), first_row - starts[p])
        try:
            for k in range(k0, len(blocks)):
                first = i0 if k == k0 else 0
                if self.shuffle:
                    yield from self._shuffled_block(rows, blocks[k], first, (epoch, stream, k))
                else:
                    lo, hi = blocks[k]
                    for off in range(lo + first * self.batch_rows, hi, self.batch_rows):
                        yield rows.take(min(self.batch_rows, hi - off))
        finally:
            rows.close()

    def _shuffled_block(
        self, rows: _Rows, block: tuple[int, int], first: int, where: tuple[int, int, int]
    ) -> Iterator[pa.RecordBatch]:
        """The items of one block, from item ``first`` on: the block's rows permuted by its own
        generator; only the rows of the items still to come are gathered."""
        need = block[1] - block[0]
        table = pa.Table.from_batches(rows.pieces(need))
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, *where]))
        order = rng.permutation(need)[first * self.batch_rows :]
        out = table.take(pa.array(order)).combine_chunks().to_batches()[0]
        for off in range(0, len(order), self.batch_rows):
            yield out.slice(off, self.batch_rows)

    def _convert(self, batch: pa.RecordBatch) -> Item:
        return batch_to_tensors(batch) if self.output == "torch" else batch

    def _iterate(self) -> Iterator[tuple[int, Item]]:
        """Yield ``(logical worker, item)``; in-process iteration also counts what it yields."""
        info = get_worker_info()
        in_process = info is None
        num_workers = 1 if info is None else info.num_workers
        worker = 0 if info is None else (info.id + self._rotation) % num_workers
        if in_process:
            self._prepare(1)
        elif num_workers != self._num_workers:
            raise RuntimeError("iterate with ShardDataLoader to resume with DataLoader workers")
        streams = self.world_size * num_workers
        stream = self.rank * num_workers + worker
        source = self._opened()
        epoch = self._epoch
        for batch in self._stream_items(source, epoch, stream, streams, self._consumed[worker]):
            if in_process:
                self._consumed[worker] += 1
            yield worker, self._convert(batch)
        if in_process:
            self._finished = True  # state stays "all consumed"; iterating again replays

    def __iter__(self) -> Iterator[Item]:
        info = get_worker_info()
        if info is not None:
            self._prepare(info.num_workers)  # a plain DataLoader: split (resume: ShardDataLoader)
        for _, item in self._iterate():
            yield item


class _Rows:
    """The rows of a stream of ``(shard, batch)``, taken in pieces of any length: ``drop`` rows
    are skipped first (a resume inside a shard); slices of the source's batches are handed
    out as they are (zero-copy) and copied only where an item spans two batches."""

    def __init__(self, batches: Iterator[tuple[int, pa.RecordBatch]], drop: int) -> None:
        self._batches = batches
        self._drop = drop
        self._pending: deque[pa.RecordBatch] = deque()
        self._rows = 0

    def _fill(self, need: int) -> None:
        while self._rows < need:
            got = next(self._batches, None)
            if got is None:
                raise RuntimeError("the source yielded fewer rows than its shard_rows promise")
            batch = got[1]
            if self._drop:
                cut = min(self._drop, batch.num_rows)
                batch, self._drop = batch.slice(cut), self._drop - cut
            if batch.num_rows:
                self._pending.append(batch)
                self._rows += batch.num_rows

    def pieces(self, need: int) -> list[pa.RecordBatch]:
        """The next ``need`` rows, as slices of the source's batches."""
        self._fill(need)
        out: list[pa.RecordBatch] = []
        while need:
            head = self._pending[0]
            if head.num_rows <= need:
                out.append(self._pending.popleft())
            else:
                out.append(head.slice(0, need))
                self._pending[0] = head.slice(need)
            need -= out[-1].num_rows
            self._rows -= out[-1].num_rows
        return out

    def take(self, need: int) -> pa.RecordBatch:
        """The next ``need`` rows as one record batch."""
        parts = self.pieces(need)
        return parts[0] if len(parts) == 1 else pa.concat_batches(parts)

    def close(self) -> None:
        close = getattr(self._batches, "close", None)
        if close is not None:
            close()


class _Tagged(IterableDataset[tuple[int, Item]]):
    def __init__(self, dataset: ShardDataset) -> None:
        super().__init__()
        self.dataset = dataset

    def __iter__(self) -> Iterator[tuple[int, Item]]:
        return self.dataset._iterate()


class ShardDataLoader:
    """A DataLoader over a :class:`ShardDataset` whose ``state_dict`` is exact with workers.

    Items come out in DataLoader's order (round robin over workers, skipping finished ones);
    the main process counts the items of each worker, so :meth:`state_dict` is exact at any
    point, and a loader restored with :meth:`load_state_dict` continues with exactly the items
    the interrupted one had not yet yielded, in the same order.
    """

    def __init__(
        self,
        dataset: ShardDataset,
        *,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
    ) -> None:
        self.dataset = dataset
        self.num_workers = num_workers
        self._kwargs: dict[str, Any] = {
            "pin_memory": pin_memory,
            "prefetch_factor": prefetch_factor,
            "persistent_workers": persistent_workers,
        }

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[Item]:
        ds = self.dataset
        if self.num_workers == 0:
            yield from ds
            return
        ds._prepare(self.num_workers)
        snapshot = copy.copy(ds)
        snapshot._consumed = list(ds._consumed)
        loader: DataLoader[tuple[int, Item]] = DataLoader(
            _Tagged(snapshot),
            batch_size=None,
            num_workers=self.num_workers,
            collate_fn=_identity,
            **self._kwargs,
        )
        for worker, item in loader:
            ds._consumed[worker] += 1
            ds._rotation = (worker + 1) % self.num_workers  # next worker in the round robin
            yield item
        ds._finished = True


def _identity(x: Any) -> Any:
    return x
