"""HF ``datasets``: Parquet shards streamed over HTTP from nginx (``storage_options`` carries the
bearer header), handed out as Arrow tables of 1,024 rows (``with_format("arrow").iter``): the
fastest path it offers. ``local``: the same Parquet files from disk (what a warm cache holds)."""

# Imports inside functions are deliberate: each measurement process loads only the system it
# measures (peer libraries, torch, Ostraca), and the orchestrator runs without them.
# ruff: noqa: PLC0415

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from bench.peers.common import SEQ_LEN, TOKEN


class System:
    def __init__(self, cfg: dict[str, Any]) -> None:
        datasets.disable_progress_bars()
        sub = cfg.get("subdir", "parquet")
        files = sorted((Path(cfg["data_dir"]) / sub).glob("*.parquet"))
        if cfg.get("mode", "http") == "http":
            rel = Path(cfg["data_dir"]).name
            self.files = [f"{cfg['base_url']}/{rel}/{sub}/{p.name}" for p in files]
            opts: dict[str, Any] = {"headers": {"Authorization": f"Bearer {TOKEN}"}}
        else:
            self.files = [str(p) for p in files]
            opts = {}
        self.ds = datasets.load_dataset(
            "parquet",
            data_files={"train": self.files},
            split="train",
            streaming=True,
            storage_options=opts or None,
        )
        self.col = "tokens" if cfg["kind"] == "tokens" else "text"
        self.notes = {"datasets": datasets.__version__}

    def iterate(self, cfg: dict[str, Any]) -> Iterator[tuple[Any, Any, int]]:
        ds = self.ds.with_format("arrow")
        if cfg.get("state"):
            ds.load_state_dict(cfg["state"])
        self._live = ds
        for tbl in ds.iter(batch_size=1024):
            ids = tbl.column("sample_id").to_numpy()
            col = tbl.column(self.col)
            if self.col == "tokens":
                vals = col.combine_chunks().flatten().to_numpy()
                yield ids, vals, ids.nbytes + vals.nbytes
            else:
                import pyarrow.compute as pc

                yield ids, col, ids.nbytes + int(pc.sum(pc.binary_length(col)).as_py())

    def state_dict(self, consumed: int) -> dict[str, Any]:
        return dict(self._live.state_dict())

    def rank_ids(self, cfg: dict[str, Any], *, rank: int, world: int, workers: int) -> list[int]:
        from datasets.distributed import split_dataset_by_node
        from torch.utils.data import DataLoader

        ds = split_dataset_by_node(self.ds, rank=rank, world_size=world).select_columns(
            ["sample_id"]
        )
        out: list[int] = []
        for b in DataLoader(ds.with_format("torch"), batch_size=256, num_workers=workers):
            out.extend(np.asarray(b["sample_id"]).tolist())
        return out


_ = SEQ_LEN
