"""MosaicML Streaming: MDS shards. ``http``: remote = nginx through our HTTP downloader shim (no
plain-HTTP backend exists), local = a cache dir (kept between runs: warm). ``local``: reads the
MDS directory in place (no remote)."""

# Imports inside functions are deliberate: each measurement process loads only the system it
# measures (peer libraries, torch, Ostraca), and the orchestrator runs without them.
# ruff: noqa: PLC0415

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.peers.datagen import stub_streaming_vision

stub_streaming_vision()
import streaming  # noqa: E402
from streaming.base.util import clean_stale_shared_memory  # noqa: E402

from bench.peers.httpshim import install_streaming_shim  # noqa: E402


class System:
    def __init__(self, cfg: dict[str, Any]) -> None:
        if cfg["scenario"] != "ranks":  # concurrent ranks would remove each other's segments
            clean_stale_shared_memory()
        install_streaming_shim()
        self.streaming = streaming
        sub = cfg.get("subdir", "mds")
        local_dir = Path(cfg["data_dir"]) / sub
        if cfg.get("mode", "http") == "http":
            rel = Path(cfg["data_dir"]).name
            self.remote: str | None = f"{cfg['base_url']}/{rel}/{sub}"
            self.local = cfg["cache_dir"]
        else:
            self.remote, self.local = None, str(local_dir)
        self.key = "tokens" if cfg["kind"] == "tokens" else "text"
        self.notes = {"streaming": streaming.__version__}
        self.batch = 256

    def dataset(self) -> Any:
        return self.streaming.StreamingDataset(
            remote=self.remote,
            local=self.local,
            shuffle=False,
            batch_size=self.batch,
        )

    def iterate(self, cfg: dict[str, Any]) -> Iterator[tuple[Any, Any, int]]:
        ds = self.dataset()
        if cfg.get("state"):
            ds.load_state_dict(cfg["state"])
        self._ds = ds
        text = self.key == "text"
        for s in ds:
            v = s[self.key]
            yield (int(s["sample_id"]),), v, 8 + (len(v.encode()) if text else v.nbytes)

    def state_dict(self, consumed: int) -> dict[str, Any]:
        return dict(self._ds.state_dict(consumed, True))

    def rank_ids(self, cfg: dict[str, Any], *, rank: int, world: int, workers: int) -> list[int]:
        from torch.utils.data import DataLoader

        ds = self.dataset()
        out: list[int] = []
        for b in DataLoader(
            ds,
            batch_size=self.batch,
            num_workers=workers,
            collate_fn=lambda xs: [int(x["sample_id"]) for x in xs],
        ):
            out.extend(b)
        return out
