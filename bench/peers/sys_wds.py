"""WebDataset: tar shards over HTTP through ``pipe:curl`` with the bearer header, decoded per
sample (``np.frombuffer``). Warm: the shards from local disk (``local``)."""

# Imports inside functions are deliberate: each measurement process loads only the system it
# measures (peer libraries, torch, Ostraca), and the orchestrator runs without them.
# ruff: noqa: PLC0415

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch.utils.data  # noqa: F401
import webdataset as wds

from bench.peers.common import TOKEN


class System:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.wds = wds
        sub = cfg.get("subdir", "wds")
        files = sorted((Path(cfg["data_dir"]) / sub).glob("*.tar"))
        if cfg.get("mode", "http") == "http":
            rel = Path(cfg["data_dir"]).name
            hdr = shlex.quote(f"Authorization: Bearer {TOKEN}")
            self.urls = [
                f"pipe:curl -s -f -H {hdr} {cfg['base_url']}/{rel}/{sub}/{p.name}" for p in files
            ]
        else:
            self.urls = [str(p) for p in files]
        self.text = cfg["kind"] != "tokens"
        self.notes = {"webdataset": getattr(wds, "__version__", "?")}

    def _decode(self, s: dict[str, Any]) -> tuple[int, Any]:
        sid = int(s["id"])
        if self.text:
            return sid, s["txt"].decode()
        return sid, np.frombuffer(s["tok"], dtype=np.int32)

    def dataset(self, *, split: bool) -> Any:
        wds = self.wds
        kw: dict[str, Any] = {"shardshuffle": False, "empty_check": False}
        if split:
            kw["nodesplitter"] = wds.split_by_node
            kw["workersplitter"] = wds.split_by_worker
        else:
            kw["nodesplitter"] = None
            kw["workersplitter"] = None
        return wds.WebDataset(self.urls, **kw).map(self._decode)

    def iterate(self, cfg: dict[str, Any]) -> Iterator[tuple[Any, Any, int]]:
        if cfg.get("state"):
            raise NotImplementedError("WebDataset has no state_dict/load_state_dict")
        for sid, payload in self.dataset(split=False):
            size = 8 + (len(payload.encode()) if self.text else payload.nbytes)
            yield (sid,), payload, size

    def state_dict(self, consumed: int) -> dict[str, Any]:
        raise NotImplementedError("WebDataset has no state_dict/load_state_dict")

    def rank_ids(self, cfg: dict[str, Any], *, rank: int, world: int, workers: int) -> list[int]:
        from torch.utils.data import DataLoader

        ds = self.dataset(split=True).map(lambda s: s[0])
        out: list[int] = []
        for b in DataLoader(ds, batch_size=256, num_workers=workers):
            out.extend(b.tolist())
        return out
