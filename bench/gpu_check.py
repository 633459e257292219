"""GPU check (a benchmark, not a test): train a ~100M-parameter model on data streamed, verified,
from a registry — exactly the production path.

    python bench/gpu_check.py              # CUDA: 100m preset, bf16 autocast, torch.compile
    python bench/gpu_check.py --smoke      # a tiny config on CPU, well under a minute
    python bench/gpu_check.py --synthetic  # in-memory shards instead of the registry path

By default :func:`open_source` starts a local registry (``python -m ostraca.server run`` in a
subprocess: temp data dir, SQLite), registers a publisher and a researcher, publishes synthetic
text with the real publisher (Arrow IPC shards, zstd, chunk lists, signed manifest, uploads),
grants the researcher access, and opens the dataset with ``open_dataset``: manifest and grant
verified, shards fetched ahead over HTTP, every chunk checked before its rows are decoded, the
grant re-checked at each shard. The trainer takes it from there (:class:`ShardDataset` split and
shuffle → tokenizer → packing → the model). ``--synthetic`` keeps the old in-memory source
(sha256-checked Arrow IPC bytes) as a fallback that needs no server.

Prints one JSON summary on stdout (tokens/s, MFU, data-wait fraction, peak memory, steps,
device, and how long the data setup took) and writes it to ``bench/results/gpu_check.json``
(the smoke run: ``gpu_check.smoke.json``).

MFU = tokens/s × (6·N + 12·L·C·T) / peak, N the matmul weights (tied head included), peak the
H100 SXM's dense bf16 989 TFLOP/s (pass ``--peak-tflops`` for other cards).

Runs from a plain checkout too: when ``ostraca`` is not installed, the script links the
checkout's folders into a temporary ``ostraca`` package (and hands it to the registry process).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
H100_BF16_DENSE_TFLOPS = 989.0
DATASET = "bench/synthetic"


def _ensure_ostraca() -> None:
    """Make ``import ostraca.…`` work from a checkout that was not pip-installed."""
    try:
        import ostraca.client  # noqa: F401, PLC0415
    except ImportError:
        pass
    else:
        return
    shim = Path(tempfile.mkdtemp(prefix="ostraca-shim-"))
    pkg = shim / "ostraca"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for part in ("protocol_spec", "server", "client", "trainer", "migrations"):
        (pkg / part).symlink_to(ROOT / part)
    sys.path.insert(0, str(shim))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(shim), os.environ.get("PYTHONPATH", "")) if p
    )


_ensure_ostraca()

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import torch  # noqa: E402

from ostraca.client.source import Provenance, ShardSource  # noqa: E402
from ostraca.trainer.model import preset  # noqa: E402
from ostraca.trainer.train import TrainConfig, train  # noqa: E402

# ── synthetic text, fast ────────────────────────────────────────────────────────────────────
WORDS = [
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
    "licence",
    "registry",
    "corpus",
    "research",
    "chunk",
    "digest",
    "manifest",
    "publisher",
    "gradient",
    "optimizer",
    "attention",
    "layer",
    "batch",
    "epoch",
]
BLOCK_BYTES = 4 * 1024 * 1024


def text_batches(total_bytes: int, *, seed: int = 0) -> Iterator[pa.RecordBatch]:
    """About ``total_bytes`` of documents (20–200 words from a Zipf-like vocabulary, ending in a
    full stop), as record batches of ~4 MiB with one ``text`` column. Vectorised with numpy:
    hundreds of MB per minute is not the bottleneck, a few seconds per GB is."""
    rng = np.random.default_rng(seed)
    vocab = [w.encode() + b" " for w in WORDS]
    lens = np.array([len(w) for w in vocab], np.int64)
    vstart = np.cumsum(lens) - lens
    chars = np.frombuffer(b"".join(vocab), np.uint8)
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    mean = float((lens * weights).sum())
    made = 0
    while made < total_bytes:
        want = min(BLOCK_BYTES, total_bytes - made)
        n_words = max(200, int(want / mean))
        idx = rng.choice(len(vocab), size=n_words, p=weights)
        doc_words = rng.integers(20, 201, size=n_words // 20 + 1)
        cuts = np.cumsum(doc_words)
        cuts = cuts[cuts < n_words]
        wl = lens[idx]
        ends = np.cumsum(wl)
        starts = ends - wl
        total = int(ends[-1])
        # out[k] = chars[vstart[idx[w]] + (k - starts[w])] for the word w covering byte k
        base = np.repeat(vstart[idx] - starts, wl)
        out = chars[base + np.arange(total, dtype=np.int64)]
        doc_ends = np.append(ends[cuts - 1], total)
        out[doc_ends - 1] = ord(".")  # each document's trailing space becomes a full stop
        offsets = np.concatenate(([0], doc_ends)).astype(np.int64)
        arr = pa.LargeStringArray.from_buffers(
            len(doc_ends), pa.py_buffer(offsets), pa.py_buffer(out)
        )
        yield pa.record_batch([arr], names=["text"])
        made += total


class SyntheticTextSource:
    """The ``--synthetic`` fallback: shards held as Arrow IPC stream bytes in memory,
    sha256-checked on every read like a verified client, no registry."""

    def __init__(self, *, total_bytes: int, shard_bytes: int, seed: int = 0) -> None:
        self._blobs: list[bytes] = []
        self._rows: list[int] = []
        batches = list(text_batches(total_bytes, seed=seed))
        per_shard = max(1, shard_bytes // BLOCK_BYTES)
        schema = batches[0].schema
        for s in range(0, len(batches), per_shard):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, schema) as w:
                for b in batches[s : s + per_shard]:
                    w.write_batch(b)
            self._blobs.append(sink.getvalue().to_pybytes())
            self._rows.append(sum(b.num_rows for b in batches[s : s + per_shard]))
        self._digests = [hashlib.sha256(b).hexdigest() for b in self._blobs]
        self._schema = schema
        self._prov = Provenance(
            dataset="bench/synthetic-in-memory",
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


# ── the production path: a local registry, the real publisher, open_dataset ────────────────
def _identity(root: Path, url: str, name: str, kind: str) -> Any:
    from ostraca.client.api import RegistryClient  # noqa: PLC0415
    from ostraca.client.config import load_config  # noqa: PLC0415
    from ostraca.client.keystore import save_signing_key  # noqa: PLC0415
    from ostraca.protocol_spec import SigningKey  # noqa: PLC0415

    home = root / f"home-{name}"
    key = SigningKey.generate()
    save_signing_key(
        key, home / "identity.pem", profile={"name": name, "kind": kind, "affiliation": "Bench"}
    )
    client = RegistryClient(load_config(home=home, registry=url, cache_dir=home / "cache"))
    client.register(name, kind, "Bench")
    client.login()
    return client, key


def _chunk_bytes(shard_bytes: int) -> int:
    """2 MiB (the default), halved down to 64 KiB until a shard holds at least four chunks."""
    chunk = 2 * 1024 * 1024
    while chunk > 64 * 1024 and 4 * chunk > shard_bytes:
        chunk //= 2
    return chunk


def open_source(
    args: argparse.Namespace, *, total_bytes: int, stack: contextlib.ExitStack, tmp: Path
) -> tuple[ShardSource, dict[str, Any]]:
    """Where the benchmark's shards come from: by default a local registry streamed with
    ``open_dataset`` (the production path); ``--synthetic``: in memory."""
    info: dict[str, Any] = {"source": "synthetic-in-memory" if args.synthetic else "registry"}
    shard_bytes = int(args.shard_mb * 1024 * 1024)
    t0 = time.perf_counter()
    if args.synthetic:
        synthetic = SyntheticTextSource(total_bytes=total_bytes, shard_bytes=shard_bytes)
        info["generate_s"] = time.perf_counter() - t0
        info["shards"] = len(synthetic.shard_rows)
        return synthetic, info

    from ostraca.client.publishing import publish  # noqa: PLC0415
    from ostraca.client.stream import open_dataset  # noqa: PLC0415
    from ostraca.protocol_spec import utc_now  # noqa: PLC0415
    from ostraca.server.process import registry_process  # noqa: PLC0415

    url = stack.enter_context(registry_process(tmp / "registry"))
    publisher, publisher_key = _identity(tmp, url, "bench-lab", "institution")
    stack.callback(publisher.close)
    researcher, _ = _identity(tmp, url, "bench-trainer", "researcher")
    stack.callback(researcher.close)
    publisher.create_namespace(DATASET.split("/", maxsplit=1)[0])
    info["registry_start_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    published = publish(
        publisher,
        text_batches(total_bytes),  # generated while the publisher encodes and hashes
        dataset=DATASET,
        license="CC0-1.0",
        terms="Synthetic text for the GPU check. Any use.",
        description="random sentences over a small vocabulary",
        shard_bytes=shard_bytes,
        chunk_bytes=_chunk_bytes(shard_bytes),
        key=publisher_key,
        progress=False,
    )
    info["generate_and_publish_s"] = time.perf_counter() - t1
    info["shards"] = len(published.shards)
    info["text_bytes"] = published.total_bytes
    request = researcher.request_access(DATASET, purpose="GPU check")
    publisher.approve(request.request_id, expires=utc_now() + timedelta(days=1))

    t2 = time.perf_counter()
    dataset = open_dataset(DATASET, client=researcher, columns=["text"], prefetch=args.prefetch)
    stack.enter_context(dataset)
    info["open_dataset_s"] = time.perf_counter() - t2
    info["manifest_digest"] = dataset.provenance.manifest_digest
    return dataset, info


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny config on CPU, seconds")
    ap.add_argument(
        "--synthetic", action="store_true", help="in-memory shards instead of a local registry"
    )
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=64, help="sequences per step")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--model-size", default="100m")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--warmup-steps", type=int, default=30, help="left out of the averages")
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS)
    ap.add_argument(
        "--shard-mb",
        type=float,
        default=2,
        help="shard size when publishing (compressed; small, so a run crosses several shards)",
    )
    ap.add_argument(
        "--data-mb",
        type=int,
        default=0,
        help="synthetic text to publish [default: twice what the run reads, at least 64]",
    )
    ap.add_argument("--prefetch", type=int, default=2, help="shards fetched ahead")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    if args.smoke:
        torch.set_num_threads(1)  # 2 threads contend on a shared 2-core box
        steps, batch, seq, size, compile_, device, skip = 6, 4, 64, "toy", False, "cpu", 1
        args.shard_mb = 0.25
        total_bytes = (args.data_mb or 3) * 1024 * 1024
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --smoke for the CPU check")
        steps, batch, seq, size = args.steps, args.batch_size, args.seq_len, args.model_size
        compile_, device, skip = not args.no_compile, "cuda", args.warmup_steps
        needed = steps * batch * seq  # byte tokenizer: about one token per byte
        total_bytes = max(args.data_mb * 1024 * 1024, 2 * needed, 64 * 1024 * 1024)

    t_setup = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp, contextlib.ExitStack() as stack:
        source, info = open_source(args, total_bytes=total_bytes, stack=stack, tmp=Path(tmp))
        setup_s = time.perf_counter() - t_setup
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
        "data_path": info["source"],
        "tokens_per_s": round(tps, 1),
        "mfu": round(mfu, 4),
        "data_wait_fraction": round(sum(waits) / sum(times), 4),
        "peak_gpu_memory_gib": round(result.peak_memory_bytes / 2**30, 3),
        "steps": result.step,
        "measured_steps": len(times),
        "step_time_ms_median": round(1000 * float(np.median(times)), 2),
        "first_loss": result.losses[0] if result.losses else None,
        "last_loss": result.losses[-1] if result.losses else None,
        "stopped": result.stopped,
        "model": mcfg.to_dict(),
        "params": result.num_params,
        "non_embedding_params": mcfg.non_embedding_params(),
        "batch_size": batch,
        "seq_len": seq,
        "compile": compile_,
        "dtype": "bf16-autocast" if device == "cuda" else "fp32",
        "flops_per_token": flops_per_token,
        "peak_tflops": args.peak_tflops,
        "train_wall_s": round(wall, 2),
        "data_setup_s": round(setup_s, 2),
        "data_setup": {k: round(v, 3) if isinstance(v, float) else v for k, v in info.items()},
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    out = args.out or RESULTS / ("gpu_check.smoke.json" if args.smoke else "gpu_check.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2)
    out.write_text(text + "\n")
    print(text)
    print(f"written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
