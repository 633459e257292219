"""Registry throughput on loopback: authorized blob HEAD and 64 KiB ranged GET versus a bare
FastAPI endpoint serving the same bytes, in the same run; and MB/s of one large authorized GET
versus reading the file from disk.

    .venv/bin/python bench/bench_server.py [--seconds 5] [--concurrency 16] [--large-mib 256]

Writes bench/results/server.json and bench/results/server.md. Not a test. The load generator
and the servers share the machine's cores, so numbers are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "server"))

from server_helpers import (
    Identity,
    arrow_shard,
    build_manifest,
    grant_access,
    new_identity,
    publish,
    request_access,
    upload_blob,
)

from ostraca.server.app import create_app
from ostraca.server.migrate import upgrade_to_head
from ostraca.server.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
RANGE = 64 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(app: FastAPI) -> tuple[str, uvicorn.Server]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False)
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def bare_app(path: Path) -> FastAPI:
    """The same bytes with no auth, no database, no audit: the floor the registry adds to."""
    app = FastAPI()
    size = path.stat().st_size

    @app.head("/blob")
    def head() -> Response:
        return Response(headers={"Content-Length": str(size)})

    @app.get("/blob")
    def get(request: Request) -> Response:
        start, _, end = request.headers["range"].removeprefix("bytes=").partition("-")
        with path.open("rb") as f:
            f.seek(int(start))
            data = f.read(int(end) - int(start) + 1)
        return Response(data, status_code=206, media_type="application/octet-stream")

    return app


async def load(
    url: str, method: str, headers: dict[str, str], seconds: float, concurrency: int, size: int
) -> dict[str, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    errors = 0

    async def worker(i: int, client: httpx.AsyncClient) -> None:
        nonlocal errors
        n = 0
        while time.perf_counter() < deadline:
            h = dict(headers)
            if method == "GET":
                start = ((i * 7919 + n) * RANGE) % max(size - RANGE, 1)
                h["Range"] = f"bytes={start}-{start + RANGE - 1}"
            t = time.perf_counter()
            r = await client.request(method, url, headers=h)
            if method == "GET":
                await r.aread()
            latencies.append(time.perf_counter() - t)
            if r.status_code not in (200, 206):
                errors += 1
            n += 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i, client) for i in range(concurrency)))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "req_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--large-mib", type=int, default=256)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ostraca-bench-"))
    settings = Settings(data_dir=tmp, max_blob_bytes=2 * 1024**3)
    upgrade_to_head(settings.sqlalchemy_url)
    base, registry = serve(create_app(settings))
    with httpx.Client(base_url=base, timeout=120) as client:
        owner = new_identity(client, "institution", "Bench Institute")
        reader: Identity = new_identity(client, "researcher", "Bench Reader")
        client.post("/v1/namespaces", json={"name": "bench"}, headers=owner.headers)
        shard = arrow_shard(200_000)  # a few MiB of Arrow IPC
        large = os.urandom(args.large_mib * 1024 * 1024)
        built = build_manifest(owner.key, "bench/data", [shard, large], chunk_bytes=2 * 1024**2)
        for data in built.blobs.values():
            upload_blob(client, owner, data, chunk=16 * 1024 * 1024)
        assert publish(client, owner, built).status_code == 201
        grant_access(
            client,
            owner,
            reader,
            "bench/data",
            request=request_access(client, reader, "bench/data"),
        )
    shard_digest = built.manifest.shards[0].sha256
    large_digest = built.manifest.shards[1].sha256
    shard_path = settings.storage_path / "sha256" / shard_digest
    bare_base, bare = serve(bare_app(shard_path))

    auth = reader.headers
    blob_url = f"{base}/v1/blobs/sha256:{shard_digest}"
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {
            "seconds": args.seconds,
            "concurrency": args.concurrency,
            "range_bytes": RANGE,
            "shard_bytes": len(shard),
            "database": "sqlite (WAL)",
        },
    }
    for name, url, method, headers in (
        ("registry_head", blob_url, "HEAD", auth),
        ("bare_head", f"{bare_base}/blob", "HEAD", {}),
        ("registry_get_64k", blob_url, "GET", auth),
        ("bare_get_64k", f"{bare_base}/blob", "GET", {}),
    ):
        results[name] = asyncio.run(
            load(url, method, headers, args.seconds, args.concurrency, len(shard))
        )
        print(name, results[name], flush=True)

    large_path = settings.storage_path / "sha256" / large_digest
    t = time.perf_counter()
    with large_path.open("rb") as f:
        while f.read(8 * 1024 * 1024):
            pass
    disk_s = time.perf_counter() - t
    with httpx.Client(timeout=300) as client:
        t = time.perf_counter()
        got = 0
        with client.stream("GET", f"{base}/v1/blobs/sha256:{large_digest}", headers=auth) as r:
            assert r.status_code == 200
            for chunk in r.iter_raw(8 * 1024 * 1024):
                got += len(chunk)
        http_s = time.perf_counter() - t
    assert got == len(large)
    mib = len(large) / 1024**2
    results["large_get"] = {
        "bytes": len(large),
        "registry_MBps": round(mib / http_s, 1),
        "disk_read_MBps": round(mib / disk_s, 1),
    }
    print("large_get", results["large_get"], flush=True)
    registry.should_exit = True
    bare.should_exit = True

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "server.json").write_text(json.dumps(results, indent=2) + "\n")
    rows = [
        "| endpoint | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|",
    ]
    for name in ("registry_head", "bare_head", "registry_get_64k", "bare_get_64k"):
        r = results[name]
        rows.append(
            f"| {name} | {r['req_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} |"
        )
    lg = results["large_get"]
    md = (
        "# Registry server benchmark\n\n"
        f"Loopback, one uvicorn worker, SQLite (WAL), {args.concurrency} concurrent clients for "
        f"{args.seconds} s each, {os.cpu_count()} CPUs shared by load generator and servers. "
        "`registry_*` is an authorized read (token lookup, grant check, audit row for GET); "
        "`bare_*` is a FastAPI endpoint serving the same bytes with none of that.\n\n"
        + "\n".join(rows)
        + f"\n\nOne {lg['bytes'] // 1024**2} MiB authorized GET: {lg['registry_MBps']} MiB/s; "
        f"reading the same file from disk (page cache): {lg['disk_read_MBps']} MiB/s.\n"
    )
    (RESULTS / "server.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
