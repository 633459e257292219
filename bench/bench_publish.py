"""Publish throughput: MB/s of input Parquet into zstd shards, before and after, with the cost of
every stage (not a test).

One command, <= 3 minutes: ``.venv/bin/python -m bench.bench_publish`` (table on stdout, JSON in
``bench/results/publish.json``, the table in ``bench/results/publish.md``).

Writes ``--parquet-mb`` (default 500) of Parquet (snappy, row groups of 4,096 rows) holding token
rows (``sample_id`` int64 + 2,049 int32 tokens of a 50k vocabulary, as ``bench/peers``
generates them), starts a local registry (its own process, on loopback: it shares the two cores
with the publisher, as on a laptop), and then, each in a fresh process:

- **stages**, one at a time on one thread, in CPU seconds per GB of input Parquet: reading the
  Parquet (as ``ingest`` does now, and with the fixed 65,536-row batches it used before), Arrow
  IPC encoding with zstd into a file, the two sha256 passes of the shard writer (blob id and
  chunk list), AES-256-GCM of every 2 MiB chunk, and uploading the shards (the client's CPU and
  the registry's, which receives, writes and re-hashes every blob);
- **publish** end to end, ``--no-encrypt`` and encrypted (the default), with this tree
  (``after``) and with the client of commit ``--before`` (``before``, the same registry):
  wall MB/s of input Parquet, and the client's and the registry's CPU seconds per GB.

Each publish goes into a namespace of its own (a namespace that holds a blob skips its upload).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BEFORE = "55c6f3c"
"""The last commit with the sequential publish (encode everything, then upload)."""
TERMS = "bench only"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _generate(path: Path, parquet_mb: int) -> int:
    """Token rows into ``path`` until it holds about ``parquet_mb`` MB; returns the rows."""
    from bench.peers.common import SEQ_LEN, tokens_for  # noqa: PLC0415 — generator only here

    writer: pq.ParquetWriter | None = None
    rows = 0
    while writer is None or path.stat().st_size < parquet_mb * 10**6:
        ids = np.arange(rows, rows + 4096, dtype=np.int64)
        tokens = pa.FixedSizeListArray.from_arrays(pa.array(tokens_for(ids).reshape(-1)), SEQ_LEN)
        table = pa.table([pa.array(ids), tokens], names=["sample_id", "tokens"])
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=4096)
        rows += len(ids)
    writer.close()
    return rows


# ── children ──────────────────────────────────────────────────────────────────────────────────


def _stage(parquet: Path, fn: Callable[[], Any]) -> dict[str, float]:
    t0, c0 = time.perf_counter(), _cpu()
    fn()
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    gb = parquet.stat().st_size / 1e9
    return {"wall_s": wall, "cpu_s": cpu, "cpu_s_per_gb": cpu / gb, "one_core_mb_s": gb * 1e3 / cpu}


def _stages(cfg: dict[str, Any]) -> dict[str, Any]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    from ostraca.client.api import RegistryClient  # noqa: PLC0415
    from ostraca.client.config import load_config  # noqa: PLC0415
    from ostraca.client.ingest import open_inputs  # noqa: PLC0415
    from ostraca.client.shards import HashingSink, ShardWriter  # noqa: PLC0415
    from ostraca.client.staging import UploadSessions, upload_blob  # noqa: PLC0415

    parquet, work = Path(cfg["parquet"]), Path(cfg["work"])
    out: dict[str, Any] = {}

    def read_with(rows: int | None) -> None:
        if rows is None:
            for batch in open_inputs(str(parquet))[0].batches():
                del batch
        else:
            for batch in pq.ParquetFile(parquet).iter_batches(batch_size=rows):
                del batch

    out["parquet read (ingest, ~4 MiB batches)"] = _stage(parquet, lambda: read_with(None))
    out["parquet read (65,536-row batches, before)"] = _stage(parquet, lambda: read_with(65536))
    batches = list(open_inputs(str(parquet))[0].batches())
    schema = batches[0].schema
    encoded = work / "encoded.arrows"

    def ipc() -> None:
        with open(encoded, "wb") as fh, pa.ipc.new_stream(fh, schema, options=_zstd()) as w:
            for batch in batches:
                for off in range(0, batch.num_rows, 256):  # the shard writer's ~2 MiB batches
                    w.write_batch(batch.slice(off, 256))

    out["IPC encode + zstd (to a file)"] = _stage(parquet, ipc)
    data = memoryview(encoded.read_bytes())

    def hashes() -> None:
        sink = HashingSink(open(os.devnull, "wb"), 2 << 20)  # noqa: SIM115
        for off in range(0, len(data), 1 << 20):
            sink.write(data[off : off + (1 << 20)])
        sink.finish()

    out["sha256 x2 (blob id + chunk list)"] = _stage(parquet, hashes)
    aead = AESGCM(bytes(32))
    out["AES-256-GCM (2 MiB chunks)"] = _stage(
        parquet,
        lambda: [
            aead.encrypt(bytes(12), data[o : o + (2 << 20)].tobytes(), b"")
            for o in range(0, len(data), 2 << 20)
        ],
    )
    shards = work / "shards"
    writer = ShardWriter(shards, schema, compression="zstd")
    for batch in batches:
        writer.write(batch)
    files = writer.close()
    client = RegistryClient(load_config(home=Path(cfg["home"]), registry=cfg["registry"]))
    sessions = UploadSessions(work / "uploads.json")
    r0 = _proc_cpu(cfg["registry_pid"])

    def upload() -> None:
        for f in files:
            for digest, path, size in (
                (f.sha256, f.path, f.bytes),
                (f.chunks, f.chunk_list_path, f.chunk_list_bytes),
            ):
                upload_blob(
                    client,
                    sessions,
                    namespace=cfg["namespace"],
                    digest=digest,
                    path=path,
                    size=size,
                    piece_bytes=8 << 20,
                    on_bytes=lambda _n: None,
                )

    up = _stage(parquet, upload)
    up["registry_cpu_s_per_gb"] = (_proc_cpu(cfg["registry_pid"]) - r0) / (
        parquet.stat().st_size / 1e9
    )
    out["upload (client side)"] = up
    out["shard bytes / parquet bytes"] = sum(f.bytes for f in files) / parquet.stat().st_size
    client.close()
    return out


def _zstd() -> pa.ipc.IpcWriteOptions:
    return pa.ipc.IpcWriteOptions(compression="zstd")


def _publish(cfg: dict[str, Any]) -> dict[str, Any]:
    import ostraca.client  # noqa: PLC0415 — from PYTHONPATH: this tree or the "before" one
    from ostraca.client.api import RegistryClient  # noqa: PLC0415
    from ostraca.client.config import load_config  # noqa: PLC0415

    try:
        from ostraca.client.publishing import publish  # noqa: PLC0415
    except ModuleNotFoundError:  # the "before" tree: the module was called publish
        publish = importlib.import_module("ostraca.client.publish").publish

    client = RegistryClient(load_config(home=Path(cfg["home"]), registry=cfg["registry"]))
    t0, c0 = time.perf_counter(), _cpu()
    publish(
        client,
        cfg["parquet"],
        dataset=f"{cfg['namespace']}/tokens",
        license="CC-BY-4.0",
        terms=TERMS,
        progress=False,
        encrypt=cfg["encrypt"],
    )
    client.close()
    return {
        "wall_s": time.perf_counter() - t0,
        "cpu_s": _cpu() - c0,
        "code": ostraca.client.__file__,
    }


# ── the orchestrator ──────────────────────────────────────────────────────────────────────────


def json_child(module: str, cfg: dict[str, Any], tree: Path | None = None) -> dict[str, Any]:
    """``python -m module --child CFG`` (``tree`` first on its path); its last line, as JSON."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = f"{tree}:{ROOT}"
    out = subprocess.run(
        [sys.executable, "-m", module, "--child", json.dumps(cfg)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{module} {cfg.get('mode', '')} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _child(cfg: dict[str, Any], tree: Path | None = None) -> dict[str, Any]:
    return json_child("bench.bench_publish", cfg, tree)


def _old_tree(work: Path, commit: str) -> Path:
    """``commit``'s sources as a package ``ostraca`` under ``work/before``."""
    tree = work / "before" / "ostraca"
    tree.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", commit, "client", "protocol_spec"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree.parent


def _measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from ostraca.cli.demo import make_actor  # noqa: PLC0415
    from ostraca.server.process import registry_process  # noqa: PLC0415

    parquet = work / "input.parquet"
    rows = _generate(parquet, args.parquet_mb)
    size = parquet.stat().st_size
    before = _old_tree(work, args.before)
    with registry_process(work / "registry") as registry:
        pid = int(Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()[0])
        pub = make_actor(work / "pub", registry, "bench-pub", "institution", "bench")
        namespaces = iter(f"bench{i}" for i in range(100))

        def namespace() -> str:
            name = next(namespaces)
            pub.client.create_namespace(name)
            return name

        base = {"home": str(pub.home), "registry": registry, "parquet": str(parquet)}
        stages = _child(
            {**base, "mode": "stages", "work": str(work), "registry_pid": pid}
            | {"namespace": namespace()}
        )
        runs: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.repeat):
            for encrypt in (False, True):
                for label, tree in (("after", None), ("before", before)):
                    cfg = {**base, "mode": "publish", "encrypt": encrypt, "namespace": namespace()}
                    r0 = _proc_cpu(pid)
                    r = _child(cfg, tree)
                    r["registry_cpu_s"] = _proc_cpu(pid) - r0
                    key = f"{label}/{'encrypted' if encrypt else 'no-encrypt'}"
                    runs.setdefault(key, []).append(r)
        pub.client.close()
    publish_rows = {k: _summary(v, size) for k, v in runs.items()}
    return {
        "parquet_bytes": size,
        "rows": rows,
        "stages": stages,
        "publish": publish_rows,
        "runs": runs,
    }


def _summary(runs: list[dict[str, Any]], size: int) -> dict[str, float]:
    wall = statistics.median(r["wall_s"] for r in runs)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    reg = statistics.median(r["registry_cpu_s"] for r in runs)
    gb = size / 1e9
    return {
        "wall_s": wall,
        "mb_s": size / 1e6 / wall,
        "client_cpu_s_per_gb": cpu / gb,
        "registry_cpu_s_per_gb": reg / gb,
        "cores_busy": (cpu + reg) / wall,
    }


def _table(result: dict[str, Any], args: argparse.Namespace) -> str:
    size = result["parquet_bytes"]
    lines = [
        "# Publish: input Parquet into zstd shards",
        "",
        f"{size / 1e6:.0f} MB of Parquet ({result['rows']:,} token rows), 64 MiB shards, 2 MiB "
        f"chunks, zstd; the registry on the same 2 cores; median of {args.repeat}, each a fresh "
        f"process; load average at the start {args.load:.2f}. `before` is commit {args.before}'s "
        "client. Written by `bench/bench_publish.py`.",
        "",
        "| publish | MB/s of Parquet | wall | client CPU-s/GB | registry CPU-s/GB | cores busy |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, r in sorted(result["publish"].items()):
        lines.append(
            f"| {label} | {r['mb_s']:.0f} | {r['wall_s']:.2f} s | {r['client_cpu_s_per_gb']:.2f} | "
            f"{r['registry_cpu_s_per_gb']:.2f} | {r['cores_busy']:.2f} |"
        )
    lines += [
        "",
        "Stages alone, one thread each (CPU seconds per GB of input Parquet; the 1-core rate):",
        "",
        "| stage | CPU-s/GB | 1 core MB/s |",
        "| --- | ---: | ---: |",
    ]
    for name, st in result["stages"].items():
        if not isinstance(st, dict):
            continue
        lines.append(f"| {name} | {st['cpu_s_per_gb']:.2f} | {st['one_core_mb_s']:.0f} |")
        if "registry_cpu_s_per_gb" in st:
            reg = st["registry_cpu_s_per_gb"]
            lines.append(f"| upload (the registry: receive, write, re-hash) | {reg:.2f} | — |")
    lines += [
        "",
        f"Shards hold {result['stages']['shard bytes / parquet bytes']:.2f} bytes per byte of "
        "Parquet. 250 MB/s on 2 cores leaves 8 CPU-s per GB for every stage together.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--parquet-mb", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--before", default=BEFORE, help="commit of the 'before' client")
    parser.add_argument("--out", default="publish", help="results/<out>.json and .md")
    args = parser.parse_args()
    if args.child:
        cfg = json.loads(args.child)
        print(json.dumps(_stages(cfg) if cfg["mode"] == "stages" else _publish(cfg)))
        return
    args.load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        result = _measure(args, Path(tmp))
    result["load_average"] = args.load
    table = _table(result, args)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{args.out}.md").write_text(table)


if __name__ == "__main__":
    main()
