"""GPU check (a benchmark, not a test): train a ~100M-parameter model from a ShardSource.

    python bench/gpu_check.py            # CUDA: 100m preset, bf16 autocast, torch.compile
    python bench/gpu_check.py --smoke    # a tiny config on CPU, seconds

Prints and writes (``bench/results/gpu_check.json``; the smoke run ``gpu_check.smoke.json``)
tokens/s, model FLOPs utilisation, the data-wait fraction and peak GPU memory. The data comes
through the real path from the ShardSource on: :class:`ShardDataset` (split, block shuffle,
state) → packing → the trainer. :func:`open_source` is the one place that decides where shards
come from; today it generates synthetic text shards in memory (Arrow IPC stream bytes,
sha256-checked on every read like a verified client); plug a registry-backed
``ostraca.client.open_dataset(...)`` in there to measure the whole system.

MFU = tokens/s × (6·N + 12·L·C·T) / peak, N the matmul weights (tied head included), peak the
H100 SXM's dense bf16 989 TFLOP/s (pass ``--peak-tflops`` for other cards).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from ostraca.client.source import Provenance, ShardSource
from ostraca.trainer.model import preset
from ostraca.trainer.train import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results"
H100_BF16_DENSE_TFLOPS = 989.0


class SyntheticTextSource:
    """Shards of random sentences over a small vocabulary, held as Arrow IPC stream bytes."""

    def __init__(self, *, shards: int, docs_per_shard: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        words = np.array(
            [
                "the",
                "of",
                "and",
                "to",
                "in",
                "is",
                "was",
                "for",
                "on",
                "that",
                "with",
                "as",
                "by",
                "at",
                "from",
                "his",
                "her",
                "an",
                "which",
                "are",
                "data",
                "model",
                "shard",
                "grant",
                "train",
                "signed",
                "verify",
                "arrow",
                "tensor",
                "token",
                "stream",
            ]
        )
        self._blobs: list[bytes] = []
        self._rows: list[int] = []
        for _ in range(shards):
            lengths = rng.integers(20, 200, size=docs_per_shard)
            picks = words[rng.integers(0, len(words), size=int(lengths.sum()))]
            cuts = np.cumsum(lengths)[:-1]
            docs = [" ".join(p) + "." for p in np.split(picks, cuts)]
            table = pa.table({"text": pa.array(docs, pa.large_string())})
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as w:
                for b in table.to_batches(max_chunksize=1024):
                    w.write_batch(b)
            self._blobs.append(sink.getvalue().to_pybytes())
            self._rows.append(table.num_rows)
        self._digests = [hashlib.sha256(b).hexdigest() for b in self._blobs]
        self._schema = table.schema
        self._prov = Provenance(
            dataset="bench/synthetic",
            version=1,
            manifest_digest=hashlib.sha256("".join(self._digests).encode()).hexdigest(),
            license="CC0-1.0",
            terms_sha256=hashlib.sha256(b"benchmark").hexdigest(),
            grant_id="0" * 64,
            publisher="0" * 64,
        )

    @property
    def provenance(self) -> Provenance:
        return self._prov

    @property
    def shard_rows(self) -> Sequence[int]:
        return self._rows

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def read_shards(
        self, order: Sequence[int], *, columns: Sequence[str] | None = None
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        for i in order:
            blob = self._blobs[i]
            if hashlib.sha256(blob).hexdigest() != self._digests[i]:
                raise RuntimeError(f"shard {i} does not match its digest")
            with pa.ipc.open_stream(blob) as r:
                for batch in r:
                    yield i, batch if columns is None else batch.select(list(columns))


def open_source(*, smoke: bool) -> ShardSource:
    """Where the benchmark's shards come from (replace with a registry-backed source)."""
    if smoke:
        return SyntheticTextSource(shards=4, docs_per_shard=200)
    return SyntheticTextSource(shards=16, docs_per_shard=6000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny config on CPU, seconds")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--model-size", default="100m")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--warmup-steps", type=int, default=20, help="left out of the averages")
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    if args.smoke:
        torch.set_num_threads(1)  # 2 threads contend on a shared 2-core box
        steps, batch, seq, size, compile_, device = 6, 4, 64, "toy", False, "cpu"
        skip = 1
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --smoke for the CPU check")
        steps, batch, seq, size = args.steps, args.batch_size, args.seq_len, args.model_size
        compile_, device, skip = not args.no_compile, "cuda", args.warmup_steps

    t_open = time.perf_counter()
    source = open_source(smoke=args.smoke)
    open_s = time.perf_counter() - t_open
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            out_dir=Path(tmp) / "run",
            steps=steps,
            model_size=size,
            batch_size=batch,
            seq_len=seq,
            lr=6e-4,
            compile=compile_,
            device=device,
            log_every=1 if args.smoke else 10,
            progress=False,
            batch_rows=256,
            shuffle_block_rows=4096,
        )
        t0 = time.perf_counter()
        result = train(cfg, source=source, log=lambda _m: None)
        wall = time.perf_counter() - t0

    mcfg = result.model_config or preset(size, vocab_size=257, seq_len=seq)
    times = result.step_times[skip:] or result.step_times
    waits = result.data_waits[skip:] or result.data_waits
    tokens_per_step = batch * seq
    tps = tokens_per_step * len(times) / sum(times)
    flops_per_token = mcfg.flops_per_token()
    mfu = tps * flops_per_token / (args.peak_tflops * 1e12)
    report = {
        "device": torch.cuda.get_device_name()
        if device == "cuda"
        else platform.processor() or "cpu",
        "smoke": args.smoke,
        "model": mcfg.to_dict(),
        "params": result.num_params,
        "non_embedding_params": mcfg.non_embedding_params(),
        "steps": steps,
        "measured_steps": len(times),
        "batch_size": batch,
        "seq_len": seq,
        "compile": compile_,
        "dtype": "bf16-autocast" if device == "cuda" else "fp32",
        "tokens_per_s": tps,
        "flops_per_token": flops_per_token,
        "mfu": mfu,
        "peak_tflops": args.peak_tflops,
        "data_wait_fraction": sum(waits) / sum(times),
        "step_time_ms_median": 1000 * float(np.median(times)),
        "peak_gpu_memory_gib": result.peak_memory_bytes / 2**30,
        "first_loss": result.losses[0] if result.losses else None,
        "last_loss": result.losses[-1] if result.losses else None,
        "wall_s": wall,
        "source_open_s": open_s,
        "torch": torch.__version__,
    }
    out = args.out or RESULTS / ("gpu_check.smoke.json" if args.smoke else "gpu_check.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report['device']}: {tps:,.0f} tokens/s, MFU {mfu:.1%}, data wait "
        f"{report['data_wait_fraction']:.1%}, peak memory {report['peak_gpu_memory_gib']:.2f} GiB, "
        f"loss {report['first_loss']} → {report['last_loss']}  ({out})"
    )


if __name__ == "__main__":
    main()
