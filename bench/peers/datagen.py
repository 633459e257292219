"""Deterministic synthetic corpora, written once per size into each system's native format.

D1 (``tokens``): ``sample_id`` int64 + 2,049 int32 tokens per row. D2 (``text``): ``sample_id`` +
a raw text document. Every format gets the same rows in the same shard boundaries:

    arrow/   Arrow IPC files (the local limit reads these)     parquet/ HF datasets
    wds/     WebDataset tar shards                              mds/     MosaicML Streaming
    lit/     LitData optimized chunks                           corrupt/<fmt>/ one byte flipped

The corrupted copies hard-link every file but one: shard 1 of each format, copied with the byte
at the middle of the file XOR-ed with 0xFF.
"""

# Imports inside functions are deliberate: each measurement process loads only the system it
# measures (peer libraries, torch, Ostraca), and the orchestrator runs without them.
# ruff: noqa: PLC0415

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tarfile
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import ipc

from bench.peers.common import SEQ_LEN, Corpus, text_for, tokens_for

FORMATS = ("arrow", "parquet", "wds", "mds", "lit")


def schema_for(corpus: Corpus) -> pa.Schema:
    if corpus.kind == "tokens":
        return pa.schema([("sample_id", pa.int64()), ("tokens", pa.list_(pa.int32(), SEQ_LEN))])
    return pa.schema([("sample_id", pa.int64()), ("text", pa.string())])


def shard_table(corpus: Corpus, shard: int) -> pa.Table:
    lo, hi = corpus.shard_range(shard)
    ids = np.arange(lo, hi, dtype=np.int64)
    if corpus.kind == "tokens":
        toks = tokens_for(ids)
        col: pa.Array = pa.FixedSizeListArray.from_arrays(pa.array(toks.reshape(-1)), SEQ_LEN)
    else:
        col = pa.array([text_for(int(i)) for i in ids], type=pa.string())
    return pa.Table.from_arrays([pa.array(ids), col], schema=schema_for(corpus))


def shard_files(corpus: Corpus, fmt: str, root: Path | None = None) -> list[Path]:
    """The shard files of one format, in shard order (index files excluded)."""
    d = (root or corpus.root) / fmt
    pats = {
        "arrow": "*.arrow",
        "parquet": "*.parquet",
        "wds": "*.tar",
        "mds": "*.mds",
        "lit": "*.bin",
    }
    files = sorted(d.glob(pats[fmt]))
    if fmt == "lit":
        files.sort(key=lambda p: int(p.stem.split("-")[-1]))
    return files


def generate(corpus: Corpus, log: Any = print) -> dict[str, Any]:
    """Write every format (skipped when already complete); returns the dataset description."""
    done = corpus.root / "COMPLETE.json"
    if done.exists():
        return dict(json.loads(done.read_text()))
    if corpus.root.exists():
        shutil.rmtree(corpus.root)
    corpus.root.mkdir(parents=True)
    t0 = time.perf_counter()
    log(f"generating {corpus.root.name}: {corpus.num_shards} shards x {corpus.rows_per_shard} rows")
    writers = _Writers(corpus)
    for shard in range(corpus.num_shards):
        writers.add(shard, shard_table(corpus, shard))
    writers.close()
    corrupt = {fmt: _corrupt_copy(corpus, fmt) for fmt in FORMATS}
    info = {
        "corpus": corpus.name,
        "kind": corpus.kind,
        "rows": corpus.num_rows,
        "shards": corpus.num_shards,
        "rows_per_shard": corpus.rows_per_shard,
        "bytes": {fmt: sum(p.stat().st_size for p in shard_files(corpus, fmt)) for fmt in FORMATS},
        "payload_bytes": writers.payload_bytes,
        "corrupt": corrupt,
        "generate_s": round(time.perf_counter() - t0, 1),
    }
    done.write_text(json.dumps(info, indent=1))
    log(f"generated in {info['generate_s']} s")
    return info


class _Writers:
    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self.payload_bytes = 0
        for fmt in FORMATS:
            (corpus.root / fmt).mkdir()
        stub_streaming_vision()
        from litdata.streaming.writer import BinaryWriter  # type: ignore[import-not-found,import-untyped,unused-ignore]
        from streaming import MDSWriter  # type: ignore[import-not-found,import-untyped,unused-ignore]

        columns = {"sample_id": "int64"}
        columns.update(
            {"tokens": f"ndarray:int32:{SEQ_LEN}"} if corpus.kind == "tokens" else {"text": "str"}
        )
        # MDS cuts shards by size (its defaults: no compression, no per-shard hashes).
        self.mds = MDSWriter(
            out=str(corpus.root / "mds"),
            columns=columns,
            size_limit=int(corpus.shard_bytes * 1.01),
            compression=None,
        )
        self.lit = BinaryWriter(
            str(corpus.root / "lit"), chunk_size=corpus.rows_per_shard, compression=None
        )

    def add(self, shard: int, table: pa.Table) -> None:
        c = self.corpus
        name = f"shard-{shard:05d}"
        with ipc.new_file(str(c.root / "arrow" / f"{name}.arrow"), table.schema) as w:
            w.write_table(table, max_chunksize=1024)
        pq.write_table(table, str(c.root / "parquet" / f"{name}.parquet"), row_group_size=1024)
        ids = table.column("sample_id").to_numpy()
        if c.kind == "tokens":
            flat = table.column("tokens").combine_chunks().flatten().to_numpy()
            rows: Iterator[Any] = iter(flat.reshape(len(ids), SEQ_LEN))
            self.payload_bytes += ids.nbytes + flat.nbytes
        else:
            texts = table.column("text").to_pylist()
            rows = iter(texts)
            self.payload_bytes += ids.nbytes + sum(len(t.encode()) for t in texts)
        with tarfile.open(c.root / "wds" / f"{name}.tar", "w") as tar:
            for sid, row in zip(ids.tolist(), rows, strict=True):
                payload = row.tobytes() if c.kind == "tokens" else row.encode()
                ext = "tok" if c.kind == "tokens" else "txt"
                for suffix, blob in (("id", str(sid).encode()), (ext, payload)):
                    ti = tarfile.TarInfo(f"{sid:010d}.{suffix}")
                    ti.size = len(blob)
                    ti.mtime = 0
                    tar.addfile(ti, io.BytesIO(blob))
                key = "tokens" if c.kind == "tokens" else "text"
                self.mds.write({"sample_id": sid, key: row})
                self.lit.add_item(sid, {"sample_id": sid, key: row})

    def close(self) -> None:
        self.mds.finish()
        self.lit.done()
        self.lit.merge(1)


def stub_streaming_vision() -> None:
    """Skip MosaicML Streaming's image/video subpackages: they need torchvision, whose PyPI build
    needs CUDA torch (see setup.sh). The MDS reader and writer do not use them."""
    for name in ("streaming.vision", "streaming.multimodal"):
        sys.modules.setdefault(name, types.ModuleType(name))


def _corrupt_copy(corpus: Corpus, fmt: str) -> dict[str, Any]:
    src = corpus.root / fmt
    dst = corpus.root / "corrupt" / fmt
    dst.mkdir(parents=True)
    victim = shard_files(corpus, fmt)[1 if corpus.num_shards > 1 else 0]
    for p in src.iterdir():
        if p == victim:
            shutil.copyfile(p, dst / p.name)
        else:
            os.link(p, dst / p.name)
    size = victim.stat().st_size
    offset = size // 2
    with open(dst / victim.name, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
    return {"file": victim.name, "offset": offset, "size": size}
