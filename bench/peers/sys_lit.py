"""LitData: optimized chunks. ``http``: input_dir = nginx URL through our registered HTTP
downloader (no plain-HTTP backend exists), cache_dir kept between runs (warm). ``local``: the
chunk directory read in place."""

# Imports inside functions are deliberate: each measurement process loads only the system it
# measures (peer libraries, torch, Ostraca), and the orchestrator runs without them.
# ruff: noqa: PLC0415

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import litdata
from litdata.streaming.resolver import Dir

from bench.peers.httpshim import install_litdata_shim


class System:
    def __init__(self, cfg: dict[str, Any]) -> None:
        install_litdata_shim()
        self.litdata = litdata
        sub = cfg.get("subdir", "lit")
        if cfg.get("mode", "http") == "http":
            rel = Path(cfg["data_dir"]).name
            self.input: Any = Dir(path=cfg["cache_dir"], url=f"{cfg['base_url']}/{rel}/{sub}")
            self.cache: str | None = cfg["cache_dir"]
        else:
            self.input, self.cache = str(Path(cfg["data_dir"]) / sub), None
        self.key = "tokens" if cfg["kind"] == "tokens" else "text"
        self.notes = {"litdata": litdata.__version__}

    def dataset(self) -> Any:
        return self.litdata.StreamingDataset(self.input, shuffle=False, cache_dir=self.cache)

    def iterate(self, cfg: dict[str, Any]) -> Iterator[tuple[Any, Any, int]]:
        from litdata import StreamingDataLoader

        ds = self.dataset()
        text = self.key == "text"
        if not (cfg.get("state") or cfg.get("state_out")):
            # Throughput: the dataset iterated in process, one sample at a time.
            for s in ds:
                v = s[self.key]
                v = v if text else v.numpy() if hasattr(v, "numpy") else v
                yield (int(s["sample_id"]),), v, 8 + (len(v.encode()) if text else v.nbytes)
            return
        # Resume: its StreamingDataLoader carries the state (batches of 256).
        dl = StreamingDataLoader(ds, batch_size=256, num_workers=0)
        if cfg.get("state"):
            dl.load_state_dict(cfg["state"])
        self._dl = dl
        for b in dl:
            ids = b["sample_id"].numpy()
            v = b[self.key]
            yield ids, v, 0

    def state_dict(self, consumed: int) -> dict[str, Any]:
        return dict(self._dl.state_dict())

    def rank_ids(self, cfg: dict[str, Any], *, rank: int, world: int, workers: int) -> list[int]:
        from litdata import StreamingDataLoader

        out: list[int] = []
        for b in StreamingDataLoader(self.dataset(), batch_size=256, num_workers=workers):
            out.extend(b["sample_id"].tolist())
        return out
