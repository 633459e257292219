"""Benchmark verified streaming against its raw limit (not a test).


For each ``--sizes`` (default 512MiB,2GiB) publishes a synthetic text dataset (64 MiB shards,
2 MiB chunks, no compression; generated batch by batch from one random block, so generation
stays cheap and memory flat at any size) to a local registry (its own process, loopback),
grants access, then measures, each in a fresh process (so peak RSS is per measurement), side by
side and in interleaved rounds:

- ``raw``: the same shard files read from the registry's disk with ``pa.memory_map`` +
  ``open_stream`` + sha256 of every byte (the limit: no network, no chunk checks);
- ``cold``: ``open_dataset`` with an empty cache (download, verify chunk by chunk, decode);
- ``warm``: ``open_dataset`` again, shards memory-mapped from the verified cache;
- with ``--baseline TREE``: ``before_cold``/``before_warm``, the same with another code tree.

Before starting it waits (at most ``--max-wait`` seconds) for the 1-minute load average to drop
to ``--max-load``; the load average is recorded with every run. Writes
``bench/results/<out>.json`` and ``<out>.section.md``. Usage:
``.venv/bin/python bench/bench_client.py --sizes 512MiB,2GiB --baseline /path/to/old/tree``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import uvicorn

from ostraca.client.api import RegistryClient
from ostraca.client.config import load_config, parse_size
from ostraca.client.keystore import save_signing_key
from ostraca.client.publish import publish
from ostraca.client.stream import open_dataset
from ostraca.client.trust import TrustStore
from ostraca.protocol_spec import SigningKey, utc_now
from ostraca.server.app import create_app
from ostraca.server.migrate import upgrade_to_head
from ostraca.server.settings import Settings

RESULTS = Path(__file__).parent / "results"
DATASET = "bench/text"
ROW_TEXT = 2000


def _text_batches(rows: int, batch_rows: int = 8192) -> Iterator[pa.RecordBatch]:
    """``rows`` rows of ~``ROW_TEXT`` bytes of text, batch by batch: each batch's text is a
    window of one random block at a different offset (content does not matter to an
    uncompressed benchmark; generating it must not dominate)."""
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz     ", dtype=np.uint8)
    block = letters[rng.integers(0, len(letters), 2 * batch_rows * ROW_TEXT)].tobytes()
    offsets = pa.py_buffer(np.arange(0, batch_rows * ROW_TEXT + 1, ROW_TEXT, dtype=np.int32))
    done = 0
    k = 0
    while done < rows:
        n = min(batch_rows, rows - done)
        start = (k * 7919 * 64) % (batch_rows * ROW_TEXT)
        data = pa.py_buffer(block[start : start + n * ROW_TEXT])
        text = pa.StringArray.from_buffers(n, offsets, data)
        ids = pa.array(np.arange(done, done + n, dtype=np.int64))
        yield pa.record_batch({"id": ids, "text": text})
        done += n
        k += 1


def _serve(data_dir: str, port: int) -> None:

    Path(data_dir).mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=Path(data_dir))
    upgrade_to_head(settings.database_url)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _identity(home: Path, registry: str, name: str, kind: str) -> Any:

    key = SigningKey.generate()
    save_signing_key(key, home / "identity.pem", profile={"name": name, "kind": kind})
    client = RegistryClient(load_config(home=home, registry=registry))
    client.register(name, kind, "bench")
    return client, key


def _worker(mode: str, home: str, registry: str, storage: str) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""

    t0 = time.perf_counter()  # after imports: time to first batch from the call
    cpu0 = os.times()
    first = None
    rows = 0
    nbytes = 0
    if mode == "raw":
        digest = TrustStore(Path(home)).known_digest(DATASET, 1)
        manifest = json.loads((Path(home) / "trusted_manifests" / f"{digest}.json").read_bytes())
        shards = json.loads(base64.b64decode(manifest["payload"]))["shards"]
        for s in shards:
            path = next(Path(storage).rglob(s["sha256"]))
            mm = pa.memory_map(str(path))
            buf = mm.read_buffer()
            h = hashlib.sha256()
            h.update(memoryview(buf))
            if h.hexdigest() != s["sha256"]:
                raise SystemExit("digest mismatch")
            for batch in pa.ipc.open_stream(buf):
                if first is None:
                    first = time.perf_counter() - t0
                rows += batch.num_rows
                nbytes += batch.nbytes
        net = 0
    else:
        config = load_config(home=Path(home), registry=registry)
        with open_dataset(DATASET, config=config, prefetch=2) as ds:
            for batch in ds:
                if first is None:
                    first = time.perf_counter() - t0
                rows += batch.num_rows
                nbytes += batch.nbytes
            net = ds.manifest.statement.total_bytes
    elapsed = time.perf_counter() - t0
    cpu1 = os.times()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
    status = Path("/proc/self/status").read_text().splitlines()
    rss = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    print(
        json.dumps(
            {
                "mode": mode,
                "seconds": elapsed,
                "rows": rows,
                "bytes": nbytes,
                "first_batch_s": first,
                "peak_rss": rss,
                "shard_bytes": net,
                "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
            }
        )
    )


def _env(code: Path | None) -> dict[str, str]:
    """The environment of a child: ``code`` (another tree holding ``ostraca/…``) first on
    ``PYTHONPATH`` when given — the "before" rows run the old client against the old server."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code.resolve())
    return env


def _start_registry(data_dir: Path, code: Path | None) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", str(data_dir), str(port)],
        env=_env(code),
        cwd="/",
    )
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return server, f"http://127.0.0.1:{port}"


def _run_worker(
    mode: str, home: Path, registry: str, storage: Path, code: Path | None = None
) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            mode,
            str(home),
            registry,
            str(storage),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=_env(code),
        cwd="/",
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="512MiB,2GiB", help="dataset sizes, comma-separated")
    parser.add_argument("--size", help="one dataset size (e.g. 512MiB; overrides --sizes)")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait for this 1-min load")
    parser.add_argument("--max-wait", type=float, default=600, help="seconds to wait at most")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--baseline", type=Path, help="another code tree (before a change): extra rows, same run"
    )
    parser.add_argument("--out", default="client", help="results file stem")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve[0], int(args.serve[1]))
        return
    if args.worker:
        _worker(*args.worker)
        return

    _wait_for_load(args.max_load, args.max_wait)
    codes: dict[str, Path | None] = {"": None}
    if args.baseline is not None:
        codes = {"before_": args.baseline, "": None}
    sizes = [parse_size(x) for x in (args.size or args.sizes).split(",")]
    reports = {}
    sections = []
    for size in sizes:
        report, lines = _measure(size, args.repeat, codes)
        reports[f"{size / 1e9:.1f}GB"] = report
        sections.append("\n".join(lines))
        print("\n".join(lines), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": _LOAD_AT_START,
        "baseline": str(args.baseline) if args.baseline else None,
        "sizes": reports,
    }
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / f"{args.out}.section.md").write_text("\n\n".join(sections) + "\n")


_LOAD_AT_START: list[float] = []


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for_load(max_load: float, max_wait: float) -> None:
    """Wait (polling each minute, at most ``max_wait`` s) until the 1-minute load is low."""
    deadline = time.monotonic() + max_wait
    while True:
        load = os.getloadavg()
        if load[0] <= max_load or time.monotonic() >= deadline:
            break
        print(f"load average {load[0]:.2f} > {max_load}: waiting a minute", flush=True)
        time.sleep(60)
    _LOAD_AT_START[:] = list(os.getloadavg())
    print(f"starting at load average {_LOAD_AT_START}", flush=True)


def _measure(
    size: int, repeat: int, codes: dict[str, Path | None]
) -> tuple[dict[str, Any], list[str]]:
    """Publish ``size`` bytes, run every row ``repeat`` times (rounds interleaved), summarise."""
    work = Path(tempfile.mkdtemp(prefix="ostraca-bench-"))
    server, registry = _start_registry(work / "registry", None)
    try:
        pub, pub_key = _identity(work / "pub", registry, "bench-pub", "institution")
        res, _ = _identity(work / "res", registry, "bench-res", "researcher")
        pub.create_namespace("bench")
        rows = size // (ROW_TEXT + 12)
        t = time.perf_counter()
        publish(
            pub,
            _text_batches(rows),
            dataset=DATASET,
            license="CC-BY-4.0",
            terms="bench only",
            key=pub_key,
            progress=False,
            compression="none",
            # Unencrypted (ENCRYPTION.md's public case): the raw limit reads the same bytes.
            encrypt=False,
        )
        publish_s = time.perf_counter() - t
        req = res.request_access(DATASET, purpose="benchmark")
        pub.approve(req.request_id, expires=utc_now() + timedelta(days=1))
        pub.close()
        res.close()
    finally:
        server.terminate()
        server.wait(10)
    storage = work / "registry"
    # ``raw`` last: it reads the manifest the first ``open_dataset`` pinned.
    modes = ["cold", "warm", "raw"]
    results: dict[str, list[dict[str, Any]]] = {}
    cache = work / "res" / "cache"
    # Rounds interleave every row, so a change in machine load hits all rows alike.
    try:
        for _ in range(repeat):
            for prefix, code in codes.items():
                server, registry = _start_registry(storage, code)
                try:
                    for mode in modes:
                        if mode == "raw" and prefix:
                            continue
                        if mode == "cold":
                            subprocess.run(["rm", "-rf", str(cache)], check=True)
                        load = os.getloadavg()[0]
                        server_cpu = _cpu_seconds(server.pid)
                        r = _run_worker(mode, work / "res", registry, storage, code)
                        r["server_cpu_s"] = _cpu_seconds(server.pid) - server_cpu
                        r["loadavg_1m"] = load
                        results.setdefault(prefix + mode, []).append(r)
                        print(
                            f"{size / 1e9:.1f} GB",
                            prefix + mode,
                            {k: r[k] for k in ("seconds", "first_batch_s", "peak_rss")},
                            f"load {load:.2f}",
                            flush=True,
                        )
                finally:
                    server.terminate()
                    server.wait(10)
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=True)

    def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
        r = dict(sorted(runs, key=lambda x: x["seconds"])[len(runs) // 2])
        r["rows_per_s"] = r["rows"] / r["seconds"]
        r["MB_per_s"] = r["bytes"] / r["seconds"] / 1e6
        mbps = [x["bytes"] / x["seconds"] / 1e6 for x in runs]
        ttfb = [x["first_batch_s"] for x in runs]
        rss = [x["peak_rss"] for x in runs]
        r["MB_per_s_median"] = statistics.median(mbps)
        r["MB_per_s_range"] = [min(mbps), max(mbps)]
        r["first_batch_s_median"] = statistics.median(ttfb)
        r["first_batch_s_range"] = [min(ttfb), max(ttfb)]
        r["peak_rss_median"] = statistics.median(rss)
        r["peak_rss_range"] = [min(rss), max(rss)]
        gb = r["shard_bytes"] / 1e9 if r["shard_bytes"] else r["bytes"] / 1e9
        r["client_cpu_s_per_GB_median"] = statistics.median(x["cpu_s"] for x in runs) / gb
        r["server_cpu_s_per_GB_median"] = statistics.median(x["server_cpu_s"] for x in runs) / gb
        return r

    summary = {k: median(v) for k, v in results.items()}
    loads = [r["loadavg_1m"] for runs in results.values() for r in runs]
    report = {
        "dataset_bytes": int(size),
        "rows": rows,
        "publish_seconds": publish_s,
        "repeat": repeat,
        "loadavg_1m_range": [min(loads), max(loads)],
        "results": summary,
        "all_runs": results,
    }
    lines = [
        f"### {size / 1e9:.1f} GB: {rows:,} rows of ~{ROW_TEXT} B text",
        "",
        "64 MiB shards, 2 MiB chunks, no compression, not encrypted; registry on loopback in its "
        f"own process; {os.cpu_count()} cores; median of {repeat} runs (min–max), each a fresh "
        "process, rounds interleaved; 1-minute load average "
        f"{min(loads):.2f}–{max(loads):.2f} during the runs (other jobs on the machine). "
        "CPU s/GB: CPU seconds (user + system, all threads) "
        "per GB of shard bytes from the call to the last batch, median; the registry's is its "
        "whole process during the run (0 for the raw limit, which has no registry traffic).",
        "",
        "| what | MB/s | × limit | time to first batch | peak RSS | CPU s/GB: client, registry |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "raw": "limit: local shard files, memory-mapped + sha256",
        "before_cold": "before: open_dataset, empty cache",
        "before_warm": "before: open_dataset, warm cache",
        "cold": "open_dataset, empty cache (HTTP, chunk-verified)",
        "warm": "open_dataset, warm cache (memory-mapped)",
    }
    limit = summary["raw"]["MB_per_s_median"]
    for k, label in names.items():
        if k not in summary:
            continue
        r = summary[k]
        lo, hi = r["MB_per_s_range"]
        t_lo, t_hi = r["first_batch_s_range"]
        m_lo, m_hi = r["peak_rss_range"]
        lines.append(
            f"| {label} | {r['MB_per_s_median']:,.0f} ({lo:,.0f}–{hi:,.0f}) | "
            f"{r['MB_per_s_median'] / limit:.2f} | "
            f"{r['first_batch_s_median'] * 1000:,.0f} ms "
            f"({t_lo * 1000:,.0f}–{t_hi * 1000:,.0f}) | "
            f"{r['peak_rss_median'] / 1e6:,.0f} MB ({m_lo / 1e6:,.0f}–{m_hi / 1e6:,.0f}) | "
            f"{r['client_cpu_s_per_GB_median']:.2f}, {r['server_cpu_s_per_GB_median']:.2f} |"
        )
    return report, lines


if __name__ == "__main__":
    main()
