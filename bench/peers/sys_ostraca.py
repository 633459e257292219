"""Ostraca: ``open_dataset`` (manifest, chain and grant verified), shards fetched ahead and
verified chunk by chunk, Arrow record batches out. ``via``: ``registry`` (blob bytes from the
registry itself) or ``nginx`` (the same blob files behind nginx: the registry answers the metadata
calls, nginx the shard bytes — how the S3 design splits them)."""

# Imports inside functions are deliberate: each measurement process loads only the system it
# measures (peer libraries, torch, Ostraca), and the orchestrator runs without them.
# ruff: noqa: PLC0415

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bench.peers.common import TOKEN
from ostraca.client.config import load_config
from ostraca.client.fetch import BlobFetcher
from ostraca.client.stream import open_dataset


class System:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.key = "tokens" if cfg["kind"] == "tokens" else "text"
        self.notes: dict[str, Any] = {"via": cfg.get("via", "registry")}

    def open(self) -> Any:
        cfg = self.cfg
        config = load_config(
            home=Path(cfg["home"]), registry=cfg["registry"], cache_dir=Path(cfg["cache_dir"])
        )
        vd = open_dataset(cfg["dataset"], config=config)
        if cfg.get("via") == "nginx":
            vd.fetcher = BlobFetcher(
                f"{cfg['base_url']}/v1/datasets/{cfg['dataset']}",
                headers=lambda: {"Authorization": f"Bearer {TOKEN}"},
            )
        return vd

    def _out(self, batch: pa.RecordBatch) -> tuple[Any, Any, int]:
        ids = batch.column("sample_id").to_numpy()
        col = batch.column(self.key)
        if self.key == "tokens":
            vals = (
                col.values.to_numpy()
                if isinstance(col, pa.FixedSizeListArray)
                else (col.flatten().to_numpy())
            )
            return ids, vals, ids.nbytes + vals.nbytes
        return ids, col, ids.nbytes + int(pc.sum(pc.binary_length(col)).as_py())

    def iterate(self, cfg: dict[str, Any]) -> Iterator[tuple[Any, Any, int]]:
        vd = self.open()
        try:
            if not (cfg.get("state") or cfg.get("state_out")):
                for _, batch in vd.read_shards(range(len(vd.shard_rows))):
                    yield self._out(batch)
                return
            from ostraca.client.torch import ShardDataset  # torch only where it is used

            ds = ShardDataset(
                vd, shuffle=False, batch_rows=1024, output="arrow", rank=0, world_size=1
            )
            if cfg.get("state"):
                ds.load_state_dict(cfg["state"])
            self._ds = ds
            for batch in ds:
                yield self._out(batch)
        finally:
            vd.close()

    def state_dict(self, consumed: int) -> dict[str, Any]:
        return dict(self._ds.state_dict())

    def rank_ids(self, cfg: dict[str, Any], *, rank: int, world: int, workers: int) -> list[int]:
        from torch.utils.data import DataLoader

        from ostraca.client.torch import ShardDataset

        ds = ShardDataset(
            self.open,
            columns=["sample_id"],
            shuffle=False,
            output="torch",
            rank=rank,
            world_size=world,
        )
        out: list[int] = []
        for item in DataLoader(ds, batch_size=None, num_workers=workers):
            out.extend(np.asarray(item["sample_id"]).tolist())
        return out
