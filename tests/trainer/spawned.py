"""What the tests' spawned DDP ranks run. A spawned process imports the module its function
lives in: this one imports only torch and the client and trainer modules a rank needs (not the
registry's), so that each rank starts fast."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from ostraca.client.local import open_pulled
from ostraca.client.torch import ShardDataset
from ostraca.trainer.model import ModelConfig
from ostraca.trainer.train import TrainConfig, train

TINY = ModelConfig(n_layer=2, n_head=2, n_embd=64, seq_len=64)


def config(out: Path, **kw: object) -> TrainConfig:
    base = TrainConfig(
        out_dir=out,
        steps=24,
        model=TINY,
        batch_size=4,
        seq_len=64,
        lr=3e-3,
        warmup=4,
        shuffle_block_rows=50,
        batch_rows=20,
        progress=False,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def ddp_adapter_rank(rank: int, world: int, copy: str, home: str, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        source = open_pulled(copy, home=Path(home))  # each rank opens (and verifies) the copy
        ds = ShardDataset(source, columns=["id"], seed=3, block_rows=40, batch_rows=16)
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


def ddp_train_rank(rank: int, copy: str, home: str, out: str, init: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        # Every rank opens (and verifies) the pulled copy itself: offline, cheap.
        source = open_pulled(copy, home=Path(home))
        train(config(Path(out), steps=8, grad_accum=1), source=source)
    finally:
        dist.destroy_process_group()
