"""The data side of training: the tokenizer, the data streams, a prefetch thread, provenance.

Layout. Each optimizer step consumes ``world_size × grad_accum`` micro-batches; micro-batch
``j`` on rank ``r`` comes from *data stream* ``r × grad_accum + j`` (a :class:`ShardDataset`
over every ``world_size × grad_accum``-th shard). What a step trains on therefore depends only
on the global layout, not on how it is spread over processes: one process with
``grad_accum=2`` sees exactly the data two DDP ranks with ``grad_accum=1`` see.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch

from ostraca.client.source import ShardSource
from ostraca.client.torch import ShardDataset

from .distributed import barrier
from .packing import Packer
from .tokenizer import TOKENIZER_FILE, BPETokenizer, ByteTokenizer, Tokenizer, load_tokenizer

if TYPE_CHECKING:
    from .config import TrainConfig

SourceArg = ShardSource | Callable[[], ShardSource]


def open_source(source: SourceArg) -> ShardSource:
    """``source`` itself, or what the callable opens."""
    if hasattr(source, "read_shards"):
        return cast(ShardSource, source)
    return source()


def _sample_texts(source: ShardSource, column: str, shards: list[int], limit: int) -> list[str]:
    out: list[str] = []
    for _, batch in source.read_shards(shards, columns=[column]):
        out.extend(t for t in batch.column(column).to_pylist() if t is not None)
        if len(out) >= limit:
            break
    return out[:limit]


def make_tokenizer(
    cfg: TrainConfig, source: ShardSource, train_shards: list[int], rank: int, world: int
) -> Tokenizer:
    """The run's tokenizer: the saved one on resume, else bytes, or a BPE trained on rank 0
    from the training shards and saved to the run folder."""
    path = cfg.out_dir / TOKENIZER_FILE
    if cfg.resume and path.exists():
        return load_tokenizer(path)
    if cfg.tokenizer == "bytes":
        tok: Tokenizer = ByteTokenizer()
    elif cfg.tokenizer == "bpe":
        if rank == 0:
            texts = _sample_texts(source, cfg.text_column, train_shards, cfg.bpe_sample_docs)
            BPETokenizer.train(texts, vocab_size=cfg.bpe_vocab).save(path)
        barrier(world)
        return load_tokenizer(path)
    else:
        raise ValueError(f"unknown tokenizer {cfg.tokenizer!r} (bytes or bpe)")
    if rank == 0:
        tok.save(path)
    return tok


def _packer(
    cfg: TrainConfig,
    source: ShardSource,
    shards: list[int],
    tok: Tokenizer,
    seq_len: int,
    *,
    stream: tuple[int, int],
    shuffle: bool = True,
    epochs: int | None = None,
    mix: int = 1,
) -> Packer:
    """Packed sequences from data stream ``stream`` = (index, count) over ``shards``."""
    ds = ShardDataset(
        source,
        columns=[cfg.text_column],
        shards=shards,
        seed=cfg.seed,
        shuffle=shuffle,
        block_rows=cfg.shuffle_block_rows,
        batch_rows=cfg.batch_rows,
        rank=stream[0],
        world_size=stream[1],
    )
    return Packer(
        ds,
        tok,
        text_column=cfg.text_column,
        seq_len=seq_len,
        batch_size=cfg.batch_size,
        epochs=epochs,
        mix=mix,
    )


def train_streams(
    cfg: TrainConfig,
    source: ShardSource,
    shards: list[int],
    tok: Tokenizer,
    seq_len: int,
    rank: int,
    world: int,
) -> list[Packer]:
    """This rank's ``grad_accum`` data streams (see the module doc)."""
    n = world * cfg.grad_accum
    if len(shards) < n:
        raise ValueError(
            f"{len(shards)} training shard(s) cannot feed world_size × grad_accum = {n} data "
            "streams; use fewer processes or less accumulation, or publish smaller shards"
        )
    return [
        _packer(
            cfg,
            source,
            shards,
            tok,
            seq_len,
            stream=(rank * cfg.grad_accum + j, n),
            mix=cfg.mix_batches,
        )
        for j in range(cfg.grad_accum)
    ]


def eval_stream(
    cfg: TrainConfig,
    source: ShardSource,
    shards: list[int],
    tok: Tokenizer,
    seq_len: int,
    rank: int,
    world: int,
) -> Packer | None:
    """One pass, in order, over this rank's share of the held-out shards (``None``: no share)."""
    if rank >= len(shards):
        return None
    share = (rank, min(world, len(shards)))
    return _packer(cfg, source, shards, tok, seq_len, stream=share, shuffle=False, epochs=1)


def shards_read(packers: Sequence[Packer], reads: Sequence[dict[str, Any]]) -> set[int]:
    """The shards ``packers`` had read rows from when their datasets stood at ``reads``."""
    return set().union(*(p.dataset.shards_read(r) for p, r in zip(packers, reads, strict=True)))


def provenance(source: ShardSource, shards: set[int]) -> list[dict[str, Any]]:
    """What the checkpoint records (and the attestation signs) about the data it came from."""
    p = source.provenance
    read = sorted(shards)
    return [
        {
            "dataset": p.dataset,
            "version": p.version,
            "manifest_digest": p.manifest_digest,
            "license": p.license,
            "terms_sha256": p.terms_sha256,
            "grant_ids": [p.grant_id],
            "publisher": p.publisher,
            "shards_consumed": len(read),
            "shards": read,
        }
    ]


@dataclass(frozen=True, slots=True)
class StepData:
    """One step's micro-batches, the packers' states after it (for resume) and their datasets'
    states after it (which shards had been read: the packers' own states lag behind)."""

    micro: list[tuple[torch.Tensor, torch.Tensor]]
    states: list[dict[str, Any]]
    reads: list[dict[str, Any]]


_END = object()


class Prefetcher:
    """A thread that prepares step data ahead of the loop.

    Errors (a revoked grant, a digest mismatch) are delivered in order, at the step that would
    have needed the data, so the steps before it still run.
    """

    def __init__(self, packers: list[Packer], *, steps: int, depth: int) -> None:
        self._packers = packers
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(steps,), daemon=True)
        self._thread.start()

    def _put(self, obj: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(obj, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def _run(self, steps: int) -> None:
        try:
            for _ in range(steps):
                micro = [next(p) for p in self._packers]
                states = [p.state_dict() for p in self._packers]
                reads = [p.dataset.state_dict() for p in self._packers]
                if not self._put(StepData(micro, states, reads)):
                    return
        except BaseException as exc:  # handed to the training thread
            self._put(exc)
            return
        self._put(_END)

    def get(self) -> StepData:
        obj = self._q.get()
        if isinstance(obj, BaseException):
            raise obj
        if obj is _END:
            raise RuntimeError("the data stream ended early")
        return cast(StepData, obj)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
