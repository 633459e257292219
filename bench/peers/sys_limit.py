"""The local limit: Arrow IPC shards memory-mapped and handed out batch by batch (the runner's
consumer sums every token), optionally with sha256 of every byte first, on one core — what any
reader of these files could at best deliver from this disk."""

from __future__ import annotations

import hashlib
import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench.peers.common import drop_page_cache


class System:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.files = sorted((Path(cfg["data_dir"]) / "arrow").glob("*.arrow"))
        self.sha = cfg.get("variant") == "sha256"
        if cfg.get("cold"):
            drop_page_cache(self.files)
        self.notes: dict[str, Any] = {}

    def iterate(self, cfg: dict[str, Any]) -> Iterator[tuple[Any, Any, int]]:
        for path in self.files:
            with open(path, "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            if self.sha:
                hashlib.sha256(memoryview(mm)).hexdigest()
            reader = pa.ipc.open_file(pa.py_buffer(mm))
            for i in range(reader.num_record_batches):
                b = reader.get_batch(i)
                ids = b.column(0).to_numpy()
                col = b.column(1)
                if isinstance(col, pa.FixedSizeListArray):
                    # The runner's consumer sums every token, as for every other system.
                    yield ids, col.values.to_numpy(), b.nbytes
                else:
                    yield ids, col, b.nbytes
