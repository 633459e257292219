"""What end-to-end encryption costs (issue 14), end to end through the public SDK (not a test).

One command, <= 3 minutes on a quiet machine::

    .venv/bin/python bench/bench_crypto.py [--mib 256] [--repeat 7] [--warmup 1] [--sizes 2]

Prints two tables and writes ``bench/results/crypto.json`` and ``bench/results/crypto.md``:

- **primitives**, one core, per chunk size: AES-256-GCM sealing (``ShardCipher.seal_chunk``) and
  opening into a reused buffer (``ShardCipher.open_chunk_into``, as the reader does) beside
  SHA-256 over the same bytes (every chunk is hashed anyway, SPEC 2.5): what the cipher costs
  per byte on this CPU, alone.
- **end to end**, against a local registry (its own process, on loopback, sharing the cores):
  ``publish`` of a ``--mib`` table with ``encrypt=False`` and with encryption (the default),
  then, once every copy is published, a cold ``open_dataset`` stream of each (empty cache) by a
  granted researcher, alternated run by run (plaintext, encrypted) and each in its own
  namespace (no deduplication between runs). Wall MB/s of Arrow table bytes, the client's
  (and its kernel part) and the registry's CPU seconds per GB, and the speed ratio
  encrypted/plaintext of each (targets: >= 0.9x for publish and for streaming): the median
  over the ``--repeat`` pairs of adjacent runs (one of each mode) of plaintext wall over
  encrypted wall, with the lowest and highest pair. Pairs, not the two modes' medians: stream
  walls drift by up to 30% within one run on a VM, and a pair's two runs share the drift.
  The "AES share" column is the cipher's CPU for the bytes it sees (the sealed shards, zstd
  compressed: fewer than the table's) at the primitives' rate, as a fraction of the
  encrypted run's client CPU: where the extra cost goes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from bench_publish import _proc_cpu  # the same CPU accounting as the publish bench

from ostraca.protocol_spec.crypto import TAG_BYTES, DataKey, GroupContext, ShardCipher

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1024 * 1024
CONTEXT = GroupContext(dataset="bench/crypto", version=1, group="default")
TOKENS = 512
"""int32 tokens per row (2 KiB, as a training corpus of token rows)."""


def _rate(fn: Callable[[], object], nbytes: int, seconds: float) -> float:
    """MB/s (10^6 bytes per second) of ``fn`` over ``nbytes``, repeated for ``seconds``."""
    fn()
    runs, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or runs < 3:
        fn()
        runs += 1
    return nbytes * runs / elapsed / 1e6


def measure(chunk_mib: int, seconds: float, repeat: int) -> dict[str, float | int]:
    """Seal, open and sha256 MB/s on one chunk of ``chunk_mib``, interleaved, medians."""
    chunk_bytes = chunk_mib * MiB
    cipher = ShardCipher(DataKey.generate(), context=CONTEXT, shard=0, chunk_bytes=chunk_bytes)
    piece = os.urandom(chunk_bytes - TAG_BYTES)
    sealed = cipher.seal_chunk(0, piece, final=False)
    out = memoryview(bytearray(len(piece)))
    rates: dict[str, list[float]] = {"seal": [], "open": [], "sha256": []}
    for _ in range(repeat):
        rates["seal"].append(
            _rate(lambda: cipher.seal_chunk(0, piece, final=False), chunk_bytes, seconds)
        )
        rates["open"].append(
            _rate(lambda: cipher.open_chunk_into(0, sealed, out, final=False), chunk_bytes, seconds)
        )
        rates["sha256"].append(_rate(lambda: hashlib.sha256(sealed).digest(), chunk_bytes, seconds))
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "chunk_mib": chunk_mib,
        "seal_mb_s": round(med["seal"]),
        "open_mb_s": round(med["open"]),
        "sha256_mb_s": round(med["sha256"]),
        "open_over_sha256": round(med["open"] / med["sha256"], 2),
    }


def _table(mib: int) -> pa.Table:
    rows = mib * MiB // (4 * TOKENS + 8)
    tokens = np.random.default_rng(0).integers(0, 50_000, size=rows * TOKENS, dtype=np.int32)
    return pa.table(
        {
            "sample_id": pa.array(np.arange(rows, dtype=np.int64)),
            "tokens": pa.FixedSizeListArray.from_arrays(pa.array(tokens), TOKENS),
        }
    )


def _user_sys() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


@contextmanager
def _timed(registry_pid: int, into: dict[str, float]) -> Iterator[None]:
    """Wall seconds, this process's CPU seconds (and their kernel part) and the registry's, of
    the block."""
    w0, c0, r0 = time.perf_counter(), _user_sys(), _proc_cpu(registry_pid)
    yield
    c1 = _user_sys()
    into.update(
        wall_s=time.perf_counter() - w0,
        cpu_s=c1[0] + c1[1] - c0[0] - c0[1],
        sys_s=c1[1] - c0[1],
        registry_cpu_s=_proc_cpu(registry_pid) - r0,
    )


def _end_to_end(
    work: Path, table: pa.Table, repeat: int, warmup: int
) -> dict[str, list[dict[str, float]]]:
    """Two phases, each after ``warmup`` untimed full-size runs of both modes, each mode
    ``repeat`` times, alternately (which goes first alternates too): publish plaintext and
    encrypted, each in its own namespace (no deduplication between runs); then stream them cold
    (an empty cache each time), a published copy of each mode per run.

    Warm-ups, alternation and separate phases matter on this VM (virtio-balloon with free page
    reporting, DAMON): memory the guest has not touched lately comes back from the host at
    ~10 us per 4 KiB page, which lands as kernel CPU on whichever run first touches it (up to
    2 CPU-s/GB, in either mode), and a publish just before a stream leaves it that memory. The
    ``kernel`` column shows what is left of it."""
    from ostraca.cli.demo import make_actor  # noqa: PLC0415 - the registry's modules load late
    from ostraca.client.api import RegistryClient  # noqa: PLC0415
    from ostraca.client.config import load_config  # noqa: PLC0415
    from ostraca.client.publishing import publish  # noqa: PLC0415
    from ostraca.client.stream import open_dataset  # noqa: PLC0415
    from ostraca.protocol_spec import utc_now  # noqa: PLC0415
    from ostraca.server.process import registry_process  # noqa: PLC0415

    runs: dict[str, list[dict[str, float]]] = {}
    order = [("warm", n, e) for n in range(warmup) for e in (False, True)] + [
        ("bench", n, e) for n in range(repeat) for e in ((False, True), (True, False))[n % 2]
    ]
    with registry_process(work / "registry") as url:
        pid = int(Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()[0])
        pub = make_actor(work / "pub", url, "bench-pub", "institution", "bench")
        res = make_actor(work / "res", url, "bench-res", "researcher", "bench")
        for phase, n, encrypt in order:
            namespace = f"{phase}{n}{'e' if encrypt else 'p'}"
            pub.client.create_namespace(namespace)
            published: dict[str, float] = {}
            with _timed(pid, published):
                publish(
                    pub.client,
                    table,
                    dataset=f"{namespace}/tokens",
                    license="CC-BY-4.0",
                    terms="bench only",
                    progress=False,
                    encrypt=encrypt,
                )
            request = res.client.request_access(f"{namespace}/tokens", purpose="bench")
            pub.client.approve(request.request_id, expires=utc_now() + timedelta(days=1))
            if phase == "bench":
                label = "encrypted" if encrypt else "plaintext"
                runs.setdefault(f"publish/{label}", []).append(published)
        for phase, n, encrypt in order:
            namespace = f"{phase}{n}{'e' if encrypt else 'p'}"
            cold = load_config(home=res.home, registry=url, cache_dir=work / "cache" / namespace)
            streamed: dict[str, float] = {}
            with RegistryClient(cold) as reader, _timed(pid, streamed):
                start = time.perf_counter()
                with open_dataset(f"{namespace}/tokens", client=reader) as ds:
                    batches = iter(ds)
                    rows = next(batches).num_rows
                    first = time.perf_counter() - start
                    rows += sum(batch.num_rows for batch in batches)
            streamed["first_batch_s"] = first
            shards = ds.manifest.statement.shards
            streamed["blob_bytes"] = sum(b.bytes for s in shards for b in s.blobs())
            assert rows == table.num_rows
            if phase == "bench":
                label = "encrypted" if encrypt else "plaintext"
                runs.setdefault(f"stream/{label}", []).append(streamed)
        pub.client.close()
        res.client.close()
    return runs


def _summary(runs: list[dict[str, float]], nbytes: int) -> dict[str, float]:
    gb = nbytes / 1e9
    wall = statistics.median(r["wall_s"] for r in runs)
    return {
        "wall_s": round(wall, 3),
        "mb_s": round(nbytes / wall / 1e6, 1),
        "client_cpu_s_per_gb": round(statistics.median(r["cpu_s"] for r in runs) / gb, 2),
        "client_sys_s_per_gb": round(statistics.median(r["sys_s"] for r in runs) / gb, 2),
        "registry_cpu_s_per_gb": round(
            statistics.median(r["registry_cpu_s"] for r in runs) / gb, 2
        ),
        **(
            {"first_batch_ms": round(1e3 * statistics.median(r["first_batch_s"] for r in runs))}
            if "first_batch_s" in runs[0]
            else {}
        ),
    }


def _report(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    primitives = [measure(int(s), args.seconds, args.repeat) for s in args.sizes.split(",")]
    table = _table(args.mib)
    nbytes = table.nbytes
    runs = _end_to_end(work, table, args.repeat, args.warmup)
    rows = {key: _summary(value, nbytes) for key, value in runs.items()}
    seal, opening = primitives[-1]["seal_mb_s"], primitives[-1]["open_mb_s"]
    # what AES sees per table byte: the sealed shards (the same for both steps)
    sealed_share = statistics.median(r["blob_bytes"] for r in runs["stream/encrypted"]) / nbytes
    ratios = {}
    for step, rate in (("publish", seal), ("stream", opening)):
        plain, sealed = rows[f"{step}/plaintext"], rows[f"{step}/encrypted"]
        pairs = [
            p["wall_s"] / e["wall_s"]
            for p, e in zip(runs[f"{step}/plaintext"], runs[f"{step}/encrypted"], strict=True)
        ]
        aes_cpu_s_per_gb = sealed_share * 1e3 / float(rate)
        ratios[step] = {
            "speed_encrypted_over_plaintext": round(statistics.median(pairs), 2),
            "lowest_pair": round(min(pairs), 2),
            "highest_pair": round(max(pairs), 2),
            "of_medians": round(plain["wall_s"] / sealed["wall_s"], 2),
            "extra_client_cpu_s_per_gb": round(
                sealed["client_cpu_s_per_gb"] - plain["client_cpu_s_per_gb"], 2
            ),
            "aes_cpu_s_per_gb": round(aes_cpu_s_per_gb, 3),
            "aes_share_of_client_cpu": round(aes_cpu_s_per_gb / sealed["client_cpu_s_per_gb"], 3),
        }
    return {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
        "table_bytes": nbytes,
        "sealed_bytes_per_table_byte": round(sealed_share, 3),
        "table_rows": table.num_rows,
        "repeat": args.repeat,
        "warmup": args.warmup,
        "primitives": primitives,
        "end_to_end": rows,
        "ratios": ratios,
        "runs": runs,
    }


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"AES-256-GCM beside SHA-256, one core ({report['machine']}, {report['cpus']} CPUs, "
        f"load {report['load_average'][0]:.1f} at the end):",
        "",
        "| chunk | seal MB/s | open MB/s | sha256 MB/s | open/sha256 |",
        "|---|---|---|---|---|",
    ]
    for r in report["primitives"]:
        lines.append(
            f"| {r['chunk_mib']} MiB | {r['seal_mb_s']} | {r['open_mb_s']} | "
            f"{r['sha256_mb_s']} | {r['open_over_sha256']} |"
        )
    mb = report["table_bytes"] / 1e6
    lines += [
        "",
        f"End to end, public SDK, local registry process, {mb:.0f} MB Arrow table "
        f"({report['table_rows']} token rows), {report['repeat']} runs of each mode, alternated, "
        f"after {report['warmup']} full-size warm-up(s) of each:",
        "",
        "| step | plaintext MB/s | encrypted MB/s | speed enc/plain, median of pairs (range) "
        "| client CPU-s/GB plain → enc | of which kernel | registry CPU-s/GB plain → enc "
        "| AES CPU-s/GB | AES share of enc client CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = report["end_to_end"]
    for step, ratio in report["ratios"].items():
        plain, sealed = rows[f"{step}/plaintext"], rows[f"{step}/encrypted"]
        lines.append(
            f"| {step} | {plain['mb_s']} | {sealed['mb_s']} | "
            f"{ratio['speed_encrypted_over_plaintext']}x "
            f"({ratio['lowest_pair']}–{ratio['highest_pair']}) | "
            f"{plain['client_cpu_s_per_gb']} → {sealed['client_cpu_s_per_gb']} | "
            f"{plain['client_sys_s_per_gb']} → {sealed['client_sys_s_per_gb']} | "
            f"{plain['registry_cpu_s_per_gb']} → {sealed['registry_cpu_s_per_gb']} | "
            f"{ratio['aes_cpu_s_per_gb']} | {ratio['aes_share_of_client_cpu']:.1%} |"
        )
    plain, sealed = rows["stream/plaintext"], rows["stream/encrypted"]
    lines += [
        "",
        f"Time to the first batch (open_dataset: manifest, grant, log proofs; and for the "
        f"encrypted copy its key grant, unwrapped with HPKE): {plain['first_batch_ms']} ms "
        f"plaintext, {sealed['first_batch_ms']} ms encrypted.",
        "",
        f"AES sees the sealed shards: {report['sealed_bytes_per_table_byte']} bytes per table "
        "byte (zstd). Targets: publish and cold stream encrypted at >= 0.9x of plaintext.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2", help="chunk sizes in MiB (primitives)")
    parser.add_argument("--seconds", type=float, default=0.3, help="per primitive measurement")
    parser.add_argument(
        "--repeat", type=int, default=7, help="timed pairs per step (and primitive repeats)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed full-size runs of each")
    parser.add_argument("--mib", type=int, default=256, help="table size, end to end")
    parser.add_argument("--out", default="crypto", help="bench/results/<out>.json and .md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-crypto-") as tmp:
        report = _report(args, Path(tmp))
    text = _markdown(report)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
