"""Benchmark verified streaming against its raw limit (not a test). One command, <= 3 minutes:
``.venv/bin/python bench/bench_client.py`` (table on stdout, JSON in ``bench/results/client.json``).

Publishes 1 GiB of token shards (``sample_id`` int64 + 2,049 int32 tokens per row, 64 MiB shards,
2 MiB chunks, uncompressed; generated batch by batch from one random block, so generation stays
cheap and memory flat) twice to a local registry (its own process, the embedded default, on
loopback): once ``--no-encrypt`` and once encrypted (AES-256-GCM per chunk). It grants access,
then measures, each in a fresh process (so peak RSS is per measurement), side by side and in
interleaved rounds; every consumer sums every token of every batch:

- ``raw``: the plaintext shard files read from the registry's disk with ``pa.memory_map`` +
  ``open_stream`` + sha256 of every byte (the limit: no network, no chunk checks);
- ``cold``: ``open_dataset`` with an empty cache (download, verify chunk by chunk, decode);
- ``cold_enc``: the same for the encrypted dataset (verify, then open each chunk);
- ``warm``: ``open_dataset`` again, shards memory-mapped from the verified cache;
- ``warm_recheck``: the same with ``recheck_cache=True`` (every cached chunk re-hashed);
- with ``--baseline TREE``: ``before_cold``/``before_warm``, the same with another code tree.

Time to first batch is each row's, from the ``open_dataset`` call. CPU s/GB is user + system of
the client process (all threads) and of the registry process, per GB of shard bytes. Before
starting it waits (at most ``--max-wait`` seconds) for the 1-minute load average to drop to
``--max-load``; the load average is recorded with every run.
"""

# Imports inside functions are deliberate: a measurement process (``--worker``, perhaps with a
# --baseline tree first on its path) loads only what reading needs, not the publisher or server.
# ruff: noqa: PLC0415

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
import pyarrow.compute as pc

from ostraca.client.config import load_config, parse_size
from ostraca.client.stream import open_dataset
from ostraca.client.trust import TrustStore

RESULTS = Path(__file__).parent / "results"
PLAIN = "bench/tokens"
SEALED = "bench/tokens-enc"
SEQ_LEN = 2049
ROW_BYTES = 8 + 4 * SEQ_LEN
SCHEMA = pa.schema([("sample_id", pa.int64()), ("tokens", pa.list_(pa.int32(), SEQ_LEN))])
MODES = {  # mode: (dataset, cache emptied first, recheck_cache), in run order
    "cold": (PLAIN, True, False),
    "raw": (PLAIN, False, False),
    "warm": (PLAIN, False, False),
    "warm_recheck": (PLAIN, False, True),
    "cold_enc": (SEALED, True, False),
}
BASELINE_MODES = ("cold", "warm")
NAMES = {
    "raw": "limit: local shard files, memory-mapped + sha256",
    "before_cold": "before: cold, through the registry",
    "before_warm": "before: warm (cache full)",
    "cold": "Ostraca cold, through the registry (--no-encrypt)",
    "cold_enc": "Ostraca cold, through the registry, encrypted",
    "warm": "Ostraca warm (cache full, trusted by size)",
    "warm_recheck": "Ostraca warm, recheck_cache=True (every chunk re-hashed)",
}


def _token_batches(rows: int, batch_rows: int = 256) -> Iterator[pa.RecordBatch]:
    """``rows`` token rows, batch by batch: each batch's tokens are a window of one random block
    at a different offset (content does not matter uncompressed; generating it must not
    dominate)."""
    rng = np.random.default_rng(0)
    block = rng.integers(0, 50_000, 2 * batch_rows * SEQ_LEN, dtype=np.int32)
    done = k = 0
    while done < rows:
        n = min(batch_rows, rows - done)
        start = (k * 7919) % (batch_rows * SEQ_LEN)
        tokens = pa.FixedSizeListArray.from_arrays(
            pa.array(block[start : start + n * SEQ_LEN]), SEQ_LEN
        )
        ids = pa.array(np.arange(done, done + n, dtype=np.int64))
        yield pa.record_batch([ids, tokens], schema=SCHEMA)
        done += n
        k += 1


def _consume(batch: pa.RecordBatch) -> int:
    """What every consumer does with a batch: sum every token (and the ids)."""
    tokens = pc.sum(batch.column(1).flatten()).as_py() or 0
    return int(tokens) + int(pc.sum(batch.column(0)).as_py() or 0)


def _serve(data_dir: str, port: int) -> None:
    import uvicorn

    from ostraca.server.app import create_app
    from ostraca.server.migrate import upgrade_to_head
    from ostraca.server.settings import Settings

    Path(data_dir).mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=Path(data_dir))
    upgrade_to_head(settings.database_url)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _identity(home: Path, registry: str, name: str, kind: str) -> Any:
    from ostraca.client.api import RegistryClient
    from ostraca.client.keystore import save_signing_key
    from ostraca.protocol_spec import SigningKey

    key = SigningKey.generate()
    save_signing_key(key, home / "identity.pem", profile={"name": name, "kind": kind})
    client = RegistryClient(load_config(home=home, registry=registry))
    client.register(name, kind, "bench")
    return client, key


def _raw(home: str, storage: str) -> Iterator[pa.RecordBatch]:
    """The limit: the plaintext shard files, memory-mapped, sha256 of every byte, decoded."""
    digest = TrustStore(Path(home)).known_digest(PLAIN, 1)
    manifest = json.loads((Path(home) / "trusted_manifests" / f"{digest}.json").read_bytes())
    for s in json.loads(base64.b64decode(manifest["payload"]))["shards"]:
        buf = pa.memory_map(str(next(Path(storage).rglob(s["sha256"])))).read_buffer()
        if hashlib.sha256(memoryview(buf)).hexdigest() != s["sha256"]:
            raise SystemExit("digest mismatch")
        yield from pa.ipc.open_stream(buf)


def _worker(mode: str, home: str, registry: str, storage: str) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    dataset, _, recheck = MODES[mode]
    t0 = time.perf_counter()  # after imports: time to first batch from the call
    cpu0 = os.times()
    first = None
    rows = nbytes = total = 0
    net = 0
    ds = None
    if mode == "raw":
        batches: Iterator[pa.RecordBatch] = _raw(home, storage)
    else:
        config = load_config(home=Path(home), registry=registry)
        # Only when set: a --baseline client may not know the option.
        options: dict[str, Any] = {"recheck_cache": True} if recheck else {}
        ds = open_dataset(dataset, config=config, prefetch=2, **options)
        batches = iter(ds)
        net = ds.manifest.statement.total_bytes
    for batch in batches:
        total += _consume(batch)
        if first is None:
            first = time.perf_counter() - t0
        rows += batch.num_rows
        nbytes += batch.nbytes
    if ds is not None:
        ds.close()
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
                "token_sum": total,
                "first_batch_s": first,
                "peak_rss": rss,
                "shard_bytes": net,
                "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
                "cpu_user_s": cpu1.user - cpu0.user,
                "cpu_sys_s": cpu1.system - cpu0.system,
            }
        )
    )


def _env(code: Path | None) -> dict[str, str]:
    """The environment of a child: ``code`` (another tree holding ``ostraca/…``) first on
    ``PYTHONPATH`` when given — the "before" rows run the old client against today's registry."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code.resolve())
    return env


def _start_registry(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", str(data_dir), str(port)],
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
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, str(home)]
    out = subprocess.run(
        [*argv, registry, str(storage)],
        check=False,
        capture_output=True,
        text=True,
        env=_env(code),
        cwd="/",
    )
    if out.returncode:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="1GiB", help="dataset size (each of the two)")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait for this 1-min load")
    parser.add_argument("--max-wait", type=float, default=0, help="seconds to wait at most")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--baseline", type=Path, help="another code tree (before a change): extra rows, same run"
    )
    parser.add_argument("--out", default="client", help="results file stem")
    parser.add_argument("--modes", default=",".join(MODES), help="rows to run, comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (profiling)")
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
    size = parse_size(args.size)
    modes = [m for m in MODES if m in args.modes.split(",")]
    report, lines = _measure(size, args.repeat, codes, modes, keep=args.keep)
    print("\n".join(lines), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": _LOAD_AT_START,
        "baseline": str(args.baseline) if args.baseline else None,
        **report,
    }
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / f"{args.out}.section.md").write_text("\n".join(lines) + "\n")


_LOAD_AT_START: list[float] = []


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for_load(max_load: float, max_wait: float) -> None:
    """Wait (polling every 10 s, at most ``max_wait`` s) until the 1-minute load is low."""
    deadline = time.monotonic() + max_wait
    while True:
        load = os.getloadavg()
        if load[0] <= max_load or time.monotonic() >= deadline:
            break
        print(f"load average {load[0]:.2f} > {max_load}: waiting", flush=True)
        time.sleep(10)
    _LOAD_AT_START[:] = list(os.getloadavg())
    print(f"starting at load average {_LOAD_AT_START}", flush=True)


def _publish(work: Path, size: int) -> tuple[int, dict[str, float]]:
    """Publish both datasets (plain and encrypted) and grant the researcher; return the row
    count and the publish seconds of each."""
    from ostraca.client.publishing import publish
    from ostraca.protocol_spec import utc_now

    server, registry = _start_registry(work / "registry")
    seconds = {}
    try:
        pub, pub_key = _identity(work / "pub", registry, "bench-pub", "institution")
        res, _ = _identity(work / "res", registry, "bench-res", "researcher")
        pub.create_namespace("bench")
        rows = size // ROW_BYTES
        for dataset, encrypt in ((PLAIN, False), (SEALED, True)):
            t = time.perf_counter()
            publish(
                pub,
                _token_batches(rows),
                dataset=dataset,
                license="CC-BY-4.0",
                terms="bench only",
                key=pub_key,
                progress=False,
                compression="none",
                encrypt=encrypt,
            )
            seconds[dataset] = time.perf_counter() - t
            req = res.request_access(dataset, purpose="benchmark")
            pub.approve(req.request_id, expires=utc_now() + timedelta(days=1))
        pub.close()
        res.close()
    finally:
        server.terminate()
        server.wait(10)
    return rows, seconds


def _measure(
    size: int, repeat: int, codes: dict[str, Path | None], modes: list[str], *, keep: bool
) -> tuple[dict[str, Any], list[str]]:
    """Publish ``size`` bytes twice, run every row ``repeat`` times (rounds interleaved),
    summarise."""
    work = Path(tempfile.mkdtemp(prefix="ostraca-bench-"))
    rows, publish_s = _publish(work, size)
    storage = work / "registry"
    results: dict[str, list[dict[str, Any]]] = {}
    cache = work / "res" / "cache"
    # Rounds interleave every row, so a change in machine load hits all rows alike. ``raw``
    # runs after a cold one: it reads the manifest the first ``open_dataset`` pinned.
    try:
        for _ in range(repeat):
            for prefix, code in codes.items():
                run = [m for m in modes if m in BASELINE_MODES] if prefix else modes
                server, registry = _start_registry(storage)  # today's, for every row
                try:
                    for mode in run:
                        if MODES[mode][1]:
                            subprocess.run(["rm", "-rf", str(cache)], check=True)
                        load = os.getloadavg()[0]
                        server_cpu = _cpu_seconds(server.pid)
                        r = _run_worker(mode, work / "res", registry, storage, code)
                        r["server_cpu_s"] = _cpu_seconds(server.pid) - server_cpu
                        r["loadavg_1m"] = load
                        results.setdefault(prefix + mode, []).append(r)
                        print(
                            prefix + mode,
                            {k: round(r[k], 3) for k in ("seconds", "first_batch_s", "cpu_s")},
                            f"load {load:.2f}",
                            flush=True,
                        )
                finally:
                    server.terminate()
                    server.wait(10)
    finally:
        if keep:
            print(f"kept {work}", flush=True)
        else:
            subprocess.run(["rm", "-rf", str(work)], check=True)
    sums = {r["token_sum"] for runs in results.values() for r in runs}
    if len(sums) != 1:
        raise SystemExit(f"the rows read different tokens: {sums}")
    summary = {k: _median(v) for k, v in results.items()}
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
    return report, _table(size, rows, repeat, loads, summary)


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    r = dict(sorted(runs, key=lambda x: x["seconds"])[len(runs) // 2])
    mbps = [x["bytes"] / x["seconds"] / 1e6 for x in runs]
    ttfb = [x["first_batch_s"] for x in runs]
    rss = [x["peak_rss"] for x in runs]
    r["MB_per_s_median"] = statistics.median(mbps)
    r["MB_per_s_range"] = [min(mbps), max(mbps)]
    r["first_batch_s_median"] = statistics.median(ttfb)
    r["first_batch_s_range"] = [min(ttfb), max(ttfb)]
    r["peak_rss_median"] = statistics.median(rss)
    gb = r["shard_bytes"] / 1e9 if r["shard_bytes"] else r["bytes"] / 1e9
    for key, field in (
        ("client", "cpu_s"),
        ("client_user", "cpu_user_s"),
        ("server", "server_cpu_s"),
    ):
        r[f"{key}_cpu_s_per_GB_median"] = statistics.median(x[field] for x in runs) / gb
    return r


def _table(
    size: int, rows: int, repeat: int, loads: list[float], summary: dict[str, Any]
) -> list[str]:
    lines = [
        f"### {size / 2**30:.1f} GiB: {rows:,} rows of sample_id int64 + {SEQ_LEN} int32 tokens",
        "",
        "64 MiB shards, 2 MiB chunks, uncompressed; the embedded default registry on loopback in "
        f"its own process; {os.cpu_count()} cores; median of {repeat} runs (min–max), each a "
        "fresh process, rounds interleaved; every consumer sums every token; 1-minute load "
        f"average {min(loads):.2f}–{max(loads):.2f} during the runs. CPU s/GB: user + system "
        "seconds (all threads) per GB of shard bytes, from the call to the last batch (client; "
        "its user part in brackets) and of the registry process during the run.",
        "",
        "| what | MB/s | × limit | first batch | peak RSS | CPU s/GB client (user) | "
        "CPU s/GB registry |",
        "|---|---|---|---|---|---|---|",
    ]
    limit = summary["raw"]["MB_per_s_median"] if "raw" in summary else float("nan")
    for k, label in NAMES.items():
        if k not in summary:
            continue
        r = summary[k]
        lo, hi = r["MB_per_s_range"]
        t_lo, t_hi = r["first_batch_s_range"]
        lines.append(
            f"| {label} | {r['MB_per_s_median']:,.0f} ({lo:,.0f}–{hi:,.0f}) | "
            f"{r['MB_per_s_median'] / limit:.2f} | "
            f"{r['first_batch_s_median'] * 1000:,.0f} ms ({t_lo * 1000:,.0f}–{t_hi * 1000:,.0f})"
            f" | {r['peak_rss_median'] / 1e6:,.0f} MB | "
            f"{r['client_cpu_s_per_GB_median']:.2f} ({r['client_user_cpu_s_per_GB_median']:.2f})"
            f" | {r['server_cpu_s_per_GB_median']:.2f} |"
        )
    return lines


if __name__ == "__main__":
    main()
