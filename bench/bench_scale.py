"""Scale-out, side by side in one run (issue 15):

- cold verified streaming of the same shards by four routes: through the registry
  (``OSTRACA_BLOB_DELIVERY=stream``), through nginx with X-Accel-Redirect (``accel``, the
  deploy/ configuration), through pre-signed URLs from moto's S3 server (``presign``), and curl
  from the same source (no verification: the limit of each route). Each row has the MiB/s the
  client got and the CPU-seconds per GiB the registry process(es) spent — near zero when the
  bytes bypass it — and those of the byte source (nginx, the S3 server);
- authorized requests per second (64 KiB ranged GETs of one blob at varying offsets, as in
  bench_server.py: ``wrk -t1 -c16``) against
  ``ostraca server run --workers N`` for N = 1, 2, 4, on PostgreSQL when
  ``OSTRACA_BENCH_DATABASE_URL`` is set (``source scripts/postgres.sh`` gives the URL to use),
  else on SQLite.

The client is the real one: ``BlobFetcher`` into a ``ChunkVerifier`` (every chunk hashed and
checked against the signed chunk list), fresh files each time (cold: nothing cached client-side).

    .venv/bin/python bench/bench_scale.py [--mib 256] [--shard-mib 32] [--seconds 3]

Writes bench/results/scale.json and bench/results/scale.md. Not a test. The machine's cores are
shared by the client, the servers and the load generator; keep ``--mib`` small.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_server import ServerProcess, head_load, wrk
from ostraca.server.process import free_port
from tests.server.delivery_helpers import (
    dataset_fetcher,
    fetch_verified,
    publish_shards,
    wait_until_up,
)
from tests.server.nginx_helpers import running_nginx
from tests.server.server_helpers import Built, Identity, new_identity
from tests.server.storage_fixtures import S3_KEYS, S3_REGION, moto_process, s3_admin

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024
CHUNK = 2 * MIB
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and of its children, live or reaped (uvicorn's workers)."""
    total = 0.0
    for p in [pid, *_descendants(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(x) for x in fields[11:15]) / CLK_TCK  # utime stime cutime cstime
    return total


def _descendants(pid: int) -> list[int]:
    out = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        out += [int(child), *_descendants(int(child))]
    return out


@dataclass
class Process:
    url: str
    proc: subprocess.Popen[bytes]


@contextmanager
def registry(env: dict[str, str], log: Path, *, workers: int = 1) -> Iterator[Process]:
    """``ostraca server run`` in its own process with ``env`` (OSTRACA_* settings)."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("OSTRACA_")}
    cmd = [sys.executable, "-m", "ostraca.server", "run", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*cmd, "--workers", str(workers)], env={**base, **env}, stdout=out, stderr=out
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(f"{url}/healthz", proc, "the registry", log)
            yield Process(url, proc)
        finally:
            proc.terminate()
            proc.wait(30)


@dataclass
class World:
    built: Built
    reader: Identity


def setup(url: str, mib: int, shard_mib: int) -> World:
    """Publish ``acme/books`` (random shards) and grant a reader, through ``url``."""
    with httpx.Client(base_url=url, timeout=120) as http:
        owner = new_identity(http, "institution", "Acme Institute")
        reader = new_identity(http, "researcher", "Ada")
        shards = [os.urandom(shard_mib * MIB) for _ in range(max(1, mib // shard_mib))]
        built = publish_shards(http, owner, reader, shards, chunk_bytes=CHUNK)
    return World(built, reader)


def stream_verified(base: str, world: World, tmp: Path) -> int:
    """Fetch every shard with the client's verified path into fresh files; bytes received."""
    fetcher = dataset_fetcher(base, world.reader)
    total = 0
    for i in range(len(world.built.manifest.shards)):
        total += fetch_verified(fetcher, world.built, i, tmp / f"shard-{i}")
        (tmp / f"shard-{i}").unlink()
    fetcher.close()
    return total


def curl_all(base: str, world: World) -> int:
    """curl every shard (``-L``: follows a redirect, without the token to another host)."""
    total = 0
    for shard in world.built.manifest.shards:
        out = subprocess.run(
            [
                *("curl", "-sfL", "-o", "/dev/null", "-w", "%{size_download}"),
                *("-H", f"Authorization: Bearer {world.reader.token}"),
                f"{base}/v1/datasets/acme/books/blobs/sha256:{shard.sha256}",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert int(out) == shard.bytes, out
        total += shard.bytes
    return total


def measure(
    route: str, client: str, run: Any, registry_pid: int, source_pid: int | None
) -> dict[str, Any]:
    reg0 = cpu_seconds(registry_pid)
    src0 = cpu_seconds(source_pid) if source_pid else 0.0
    t = time.perf_counter()
    nbytes = run()
    elapsed = time.perf_counter() - t
    gib = nbytes / 1024**3
    row = {
        "route": route,
        "client": client,
        "mib_per_s": round(nbytes / MIB / elapsed, 1),
        "registry_cpu_s_per_gib": round((cpu_seconds(registry_pid) - reg0) / gib, 2),
        "source_cpu_s_per_gib": None,
    }
    if source_pid:
        row["source_cpu_s_per_gib"] = round((cpu_seconds(source_pid) - src0) / gib, 2)
    print(json.dumps(row), flush=True)
    return row


def both(
    route: str, base: str, world: World, tmp: Path, registry_pid: int, source_pid: int | None
) -> list[dict[str, Any]]:
    """The client's verified stream, then curl, of every shard through ``base``."""
    return [
        measure(
            route, "verified", lambda: stream_verified(base, world, tmp), registry_pid, source_pid
        ),
        measure(route, "curl", lambda: curl_all(base, world), registry_pid, source_pid),
    ]


def streaming_rows(
    args: argparse.Namespace, tmp: Path, while_up: Callable[[Process, World], None] | None = None
) -> list[dict[str, Any]]:
    """Each route's rows; ``while_up`` runs while the streaming registry is still up."""
    local = {"OSTRACA_DATA_DIR": str(tmp / "local"), "OSTRACA_BLOB_DELIVERY": "stream"}
    with registry(local, tmp / "stream.log") as reg:
        world = setup(reg.url, args.mib, args.shard_mib)
        rows = both("registry", reg.url, world, tmp, reg.proc.pid, None)
        if while_up is not None:
            while_up(reg, world)
    accel = {**local, "OSTRACA_BLOB_DELIVERY": "accel"}
    with registry(accel, tmp / "accel.log") as reg:
        upstream = int(reg.url.rsplit(":", 1)[1])
        blobs = tmp / "local" / "blobs"
        with running_nginx(
            tmp / "nginx", listen=free_port(), upstream=upstream, blobs=blobs
        ) as url:
            nginx_pid = int((tmp / "nginx" / "nginx.pid").read_text())
            rows += both("nginx X-Accel", url, world, tmp, reg.proc.pid, nginx_pid)
    with moto_process(tmp / "moto.log") as (s3_url, s3):
        s3_admin(s3_url).create_bucket(Bucket="ostraca-bench")
        env = {
            "OSTRACA_DATA_DIR": str(tmp / "s3"),
            "OSTRACA_STORAGE_URL": "s3://ostraca-bench/blobs",
            "OSTRACA_S3_ENDPOINT_URL": s3_url,
            "OSTRACA_S3_REGION": S3_REGION,
            "OSTRACA_S3_ACCESS_KEY_ID": S3_KEYS["aws_access_key_id"],
            "OSTRACA_S3_SECRET_ACCESS_KEY": S3_KEYS["aws_secret_access_key"],
            "OSTRACA_BLOB_DELIVERY": "presign",
        }
        with registry(env, tmp / "presign.log") as reg:
            world = setup(reg.url, args.mib, args.shard_mib)
            rows += both("pre-signed S3", reg.url, world, tmp, reg.proc.pid, s3.pid)
    return rows


def request_rows(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    database = os.environ.get("OSTRACA_BENCH_DATABASE_URL", "")
    rows = []
    for workers in (1, 2, 4):
        env = {"OSTRACA_DATA_DIR": str(tmp / f"workers-{workers}")}
        if database:
            env["OSTRACA_DATABASE_URL"] = _fresh_schema(database, f"bench_w{workers}")
        with registry(env, tmp / f"workers-{workers}.log", workers=workers) as reg:
            world = setup(reg.url, 1, 1)
            shard = world.built.manifest.shards[0]
            url = f"{reg.url}/v1/datasets/acme/books/blobs/sha256:{shard.sha256}"
            result = wrk(url, "GET", f"Bearer {world.reader.token}", args.seconds, shard.bytes, tmp)
        row = {"workers": workers, "database": "postgresql" if database else "sqlite", **result}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _fresh_schema(url: str, schema: str) -> str:
    """``url`` with its own, empty schema (dropped first if an earlier run left it)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return f"{url}?options=-csearch_path%3D{schema}"


def per_request_rows(
    args: argparse.Namespace, tmp: Path, reg: Process, world: World
) -> list[dict[str, Any]]:
    """Authorized HEAD and 64 KiB GET of one shard on ``reg`` against a bare FastAPI endpoint
    serving the same file (no auth, no database, no audit), rounds interleaved; each row with
    the server process's CPU microseconds per request."""
    shard = world.built.manifest.shards[0]
    path = tmp / "local" / "blobs" / "sha256" / shard.sha256
    bare = ServerProcess("bench_server:bare_from_env", {"BENCH_BARE_FILE": str(path)}, 1)
    targets = {
        "bare FastAPI": (f"{bare.url}/blob", "", bare.proc.pid),
        "registry": (
            f"{reg.url}/v1/datasets/acme/books/blobs/sha256:{shard.sha256}",
            f"Bearer {world.reader.token}",
            reg.proc.pid,
        ),
    }
    rows = []
    try:
        for run in range(args.runs):
            for server, (url, auth, pid) in targets.items():
                for kind in ("HEAD", "GET 64 KiB"):
                    cpu = cpu_seconds(pid)
                    if kind == "HEAD":
                        r = head_load(url, auth, args.seconds)
                    else:
                        r = wrk(url, "GET", auth, args.seconds, shard.bytes, tmp)
                    used = cpu_seconds(pid) - cpu
                    r["cpu_us_per_req"] = round(used / (r["req_per_s"] * args.seconds) * 1e6)
                    rows.append({"run": run, "server": server, "kind": kind, **r})
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        bare.stop()
    return rows


def wire(args: argparse.Namespace) -> None:
    """Issue 16's registry rows side by side in one run: authorized HEAD / 64 KiB GET against
    bare FastAPI, and the registry's CPU per GB streamed against nginx and pre-signed S3."""
    with tempfile.TemporaryDirectory(prefix="ostraca-wire-") as name:
        tmp = Path(name)
        requests: list[dict[str, Any]] = []

        def compare(reg: Process, world: World) -> None:
            requests.extend(per_request_rows(args, tmp, reg, world))

        streaming = streaming_rows(args, tmp, compare)
    meta = {"cpus": os.cpu_count(), "python": platform.python_version(), "mib": args.mib}
    meta |= {"loadavg_at_end": os.getloadavg(), "seconds": args.seconds, "runs": args.runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale.wire.json").write_text(
        json.dumps({"meta": meta, "streaming": streaming, "requests": requests}, indent=2) + "\n"
    )
    md = wire_report(meta, streaming, requests)
    (RESULTS / "scale.wire.md").write_text(md)
    print(md)


def wire_report(
    meta: dict[str, Any], streaming: list[dict[str, Any]], requests: list[dict[str, Any]]
) -> str:
    def median(server: str, kind: str, key: str) -> float:
        return float(
            statistics.median(
                r[key] for r in requests if r["server"] == server and r["kind"] == kind
            )
        )

    lines = [
        "# The registry at the speed of the wire (bench/bench_scale.py --wire)",
        "",
        f"{meta['cpus']} CPUs shared by clients, servers and load; 1-minute load average at the "
        f"end {meta['loadavg_at_end'][0]:.1f}. Requests: 16 keep-alive connections, "
        f"{meta['seconds']:g} s per row, median of {meta['runs']} interleaved rounds; CPU "
        "µs/request is the server process's user+system time per request.",
        "",
        "| request | bare FastAPI req/s | registry req/s | registry × bare | "
        "bare CPU µs/req | registry CPU µs/req |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in ("HEAD", "GET 64 KiB"):
        bare, reg = median("bare FastAPI", kind, "req_per_s"), median("registry", kind, "req_per_s")
        lines.append(
            f"| authorized {kind} | {bare:,.0f} | {reg:,.0f} | {reg / bare:.2f}× | "
            f"{median('bare FastAPI', kind, 'cpu_us_per_req'):,.0f} | "
            f"{median('registry', kind, 'cpu_us_per_req'):,.0f} |"
        )
    lines += [
        "",
        f"{meta['mib']} MiB per route, cold (fresh files, nothing cached by the client), one pass; "
        "CPU-s/GB: user+system seconds per 10^9 bytes delivered (/proc, 0.01 s ticks).",
        "",
        "| route | client | MB/s | registry CPU-s/GB | source CPU-s/GB |",
        "|---|---|---:|---:|---:|",
    ]
    gb = 1024**3 / 1e9  # the rows are per GiB
    for r in streaming:
        src = r["source_cpu_s_per_gib"]
        lines.append(
            f"| {r['route']} | {r['client']} | {r['mib_per_s'] * MIB / 1e6:,.0f} | "
            f"{r['registry_cpu_s_per_gib'] / gb:.2f} | "
            f"{'—' if src is None else f'{src / gb:.2f}'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="bytes streamed per route")
    parser.add_argument("--shard-mib", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0, help="wrk duration per row")
    parser.add_argument("--wire", action="store_true", help="issue 16's rows (see wire())")
    parser.add_argument("--runs", type=int, default=3, help="--wire: rounds of request rows")
    args = parser.parse_args()
    for tool in ("wrk", "curl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"needs {tool} (apt-get install {tool})")
    if args.wire:
        wire(args)
        return
    with tempfile.TemporaryDirectory(prefix="ostraca-scale-") as name:
        tmp = Path(name)
        streaming = streaming_rows(args, tmp)
        requests = request_rows(args, tmp)
    meta = {"cpus": os.cpu_count(), "python": platform.python_version(), "mib": args.mib}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale.json").write_text(
        json.dumps({"meta": meta, "streaming": streaming, "requests": requests}, indent=2) + "\n"
    )
    (RESULTS / "scale.md").write_text(report(meta, streaming, requests))


def report(
    meta: dict[str, Any], streaming: list[dict[str, Any]], requests: list[dict[str, Any]]
) -> str:
    lines = [
        "# Scale-out routes (bench/bench_scale.py)",
        "",
        f"{meta['cpus']} CPUs shared by client, servers and load; {meta['mib']} MiB per route, "
        "cold (fresh files, nothing cached by the client). CPU-s/GiB: user+system seconds of the "
        f"process per GiB delivered, from /proc in 0.01 s ticks ({0.01 * 1024 / meta['mib']:.2f} "
        "CPU-s/GiB at this size).",
        "",
        "| route | client | MiB/s | registry CPU-s/GiB | source CPU-s/GiB |",
        "|---|---|---:|---:|---:|",
    ]
    for r in streaming:
        source = "—" if r["source_cpu_s_per_gib"] is None else f"{r['source_cpu_s_per_gib']:.2f}"
        lines.append(
            f"| {r['route']} | {r['client']} | {r['mib_per_s']:,.1f} | "
            f"{r['registry_cpu_s_per_gib']:.2f} | {source} |"
        )
    lines += [
        "",
        "Authorized 64 KiB ranged GETs (`wrk -t1 -c16`, each one authorized and audited):",
        "",
        "| workers | database | req/s | p50 ms | p99 ms | errors |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in requests:
        lines.append(
            f"| {r['workers']} | {r['database']} | {r['req_per_s']:,.0f} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {r['errors']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
