"""Registry throughput on loopback, side by side in one run:

- authorized blob HEAD and 64 KiB ranged GET (random offsets) through the dataset-scoped blob
  URL (``/v1/datasets/{ns}/{name}/blobs/sha256:<hex>``) on the registry versus a bare
  FastAPI endpoint serving the same bytes (no auth, no database, no audit), each server in its
  own process, load from ``wrk`` (C, one thread) so the load generator costs little CPU;
- MB/s of one large authorized GET, received by the client's own bulk path
  (as ``ostraca.client.fetch.BlobFetcher`` does: ``http.client``, ``readinto`` one buffer) and by
  ``curl -o /dev/null``, versus reading the file from the page cache.

Each row is the median of ``--runs`` runs (rounds interleave the servers, so a change in machine
load hits every row alike), with the min..max spread. ``--baseline DIR`` adds rows for another
copy of the code (a directory holding ``ostraca/server`` …, put first on ``PYTHONPATH``), e.g.
the code before a change, measured in the same run against the same blobs and a copy of the same
database, downgraded to the baseline's newest migration by this code's own downgrades. A baseline
without dataset-scoped blob URLs (its newest migration before ``0003``) is read through its
global ``/v1/blobs/sha256:<hex>``.

    .venv/bin/python bench/bench_server.py [--seconds 4] [--runs 3] [--large-mib 256]
        [--baseline /tmp/ostraca-base]

Writes bench/results/server.json and bench/results/server.md (after the "what changed" note
kept from the existing file). Not a test. Servers and load generator share the machine's cores.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from alembic import command
from fastapi import FastAPI, Request, Response

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ostraca.server.app import create_app
from ostraca.server.migrate import alembic_config, upgrade_to_head
from ostraca.server.settings import Settings
from tests.server.server_helpers import (
    Identity,
    arrow_shard,
    blob_url,
    build_manifest,
    grant_access,
    new_identity,
    publish,
    request_access,
    upload_blob,
)

RESULTS = Path(__file__).resolve().parent / "results"
RANGE = 64 * 1024
CONCURRENCY = 16

WRK_SCRIPT = """
local size, range, auth, method = %(size)d, %(range)d, %(auth)r, %(method)r
local n = 0
wrk.method = method
request = function()
  local h = {}
  if auth ~= "" then h["Authorization"] = auth end
  if method == "GET" then
    n = n + 1
    local start = ((n * 7919) * range) %% (size - range)
    h["Range"] = "bytes=" .. start .. "-" .. (start + range - 1)
  end
  return wrk.format(method, nil, h)
end
local bad = 0
response = function(status, headers, body)
  if status ~= 200 and status ~= 206 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"socket_errors": %%d, "status_errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_in_thread(app: FastAPI) -> tuple[str, uvicorn.Server]:
    """Only for setting up the data (publish, grant); measurements use separate processes."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False)
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def bare_from_env() -> FastAPI:
    """The same bytes with no auth, no database, no audit: the floor the registry adds to."""
    path = Path(os.environ["BENCH_BARE_FILE"])
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


class ServerProcess:
    """``uvicorn`` in its own process (uvloop + httptools when installed, as in production)."""

    def __init__(self, app: str, env: dict[str, str], workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "uvicorn", "--factory", app, "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--workers", str(workers)]
        cmd += [
            "--log-level",
            "warning",
            "--no-access-log",
            "--app-dir",
            str(Path(__file__).parent),
        ]
        # The registry logs one JSON access line per request (as `ostraca server run` does);
        # it goes to a file, as it would to a log collector.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(cmd, env={**os.environ, **env}, stderr=self.log)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(
                    f"{self.url}/healthz" if "cli" in app else f"{self.url}/docs"
                ).is_success:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"server {app} did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


def wrk(url: str, method: str, auth: str, seconds: float, size: int, tmp: Path) -> dict[str, Any]:
    script = tmp / f"wrk-{method}.lua"
    script.write_text(WRK_SCRIPT % {"size": size, "range": RANGE, "auth": auth, "method": method})
    args = ["-t1", f"-c{CONCURRENCY}", f"-d{int(seconds)}s", "--timeout", "10s", "-s", str(script)]
    out = subprocess.run(
        ["wrk", *args, url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    r = json.loads(line.removeprefix("WRKJSON "))
    return {
        "req_per_s": round(r["requests"] / (r["duration_us"] / 1e6), 1),
        "p50_ms": round(r["p50_us"] / 1000, 2),
        "p99_ms": round(r["p99_us"] / 1000, 2),
        "errors": r["socket_errors"] + r["status_errors"],
    }


def head_load(url: str, auth: str, seconds: float) -> dict[str, Any]:
    """HEAD load (wrk waits for a body after HEAD, so it cannot): raw keep-alive HTTP/1.1 on
    ``CONCURRENCY`` asyncio connections (uvloop), in a child process of its own."""
    out = subprocess.run(
        [sys.executable, __file__, "--head-load", url, auth, str(seconds)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _head_load_child(url: str, auth: str, seconds: float) -> None:
    import asyncio  # noqa: PLC0415 (only the load child needs them)

    import uvloop  # noqa: PLC0415

    parts = urlsplit(url)
    lines = [f"HEAD {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
    if auth:
        lines.append(f"Authorization: {auth}")
    req = ("\r\n".join(lines) + "\r\n\r\n").encode()
    latencies: list[float] = []
    errors = 0

    async def worker(deadline: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            latencies.append(time.perf_counter() - t)
            if head[9:12] != b"200":
                errors += 1
        writer.close()

    async def main() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(t0 + seconds) for _ in range(CONCURRENCY)))
        return time.perf_counter() - t0

    elapsed = uvloop.run(main())
    latencies.sort()
    print(
        json.dumps(
            {
                "req_per_s": round(len(latencies) / elapsed, 1),
                "p50_ms": round(statistics.median(latencies) * 1000, 2),
                "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
                "errors": errors,
            }
        )
    )


def fetch_large(base: str, path: str, size: int, token: str) -> float:
    """MiB/s of one authorized GET of the whole blob, received the way the client's bulk path
    (``ostraca.client.fetch``) does: ``http.client``, ``readinto`` one reused 1 MiB buffer."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    buf = memoryview(bytearray(1024 * 1024))
    t = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    got = 0
    while n := resp.readinto(buf):
        got += n
    elapsed = time.perf_counter() - t
    conn.close()
    assert got == size
    return size / 1024**2 / elapsed


def curl_large(url: str, size: int, token: str) -> float:
    out = subprocess.run(
        [
            *("curl", "-s", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}"),
            *("-w", "%{size_download} %{time_total}", url),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert int(out[0]) == size, out
    return size / 1024**2 / float(out[1])


def disk_large(path: Path) -> float:
    t = time.perf_counter()
    with path.open("rb") as f:
        while f.read(8 * 1024 * 1024):
            pass
    return path.stat().st_size / 1024**2 / (time.perf_counter() - t)


def baseline_registry(code: Path, tmp: Path, env: dict[str, str]) -> tuple[dict[str, str], bool]:
    """The baseline registry's environment (``code`` first on ``PYTHONPATH``, a copy of the
    benchmark's database downgraded to the baseline's newest migration by this code's
    downgrades) and whether it has dataset-scoped blob URLs (migration 0003 and later)."""
    env = {**env, "PYTHONPATH": str(code.resolve())}
    head = subprocess.run(
        [
            sys.executable,
            "-c",
            "from ostraca.server.migrate import head_revision; print(head_revision())",
        ],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
        cwd="/",
    ).stdout.strip()
    db = tmp / "baseline.db"
    src, dst = sqlite3.connect(tmp / "registry.db"), sqlite3.connect(db)
    src.backup(dst)
    src.close()
    dst.close()
    command.downgrade(alembic_config(f"sqlite:///{db}"), head)
    return {**env, "OSTRACA_DATABASE_URL": f"sqlite:///{db}"}, head >= "0003"


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs}
    for key in runs[0]:
        values = [r[key] for r in runs]
        out[key] = round(statistics.median(values), 2)
        out[f"{key}_min"] = min(values)
        out[f"{key}_max"] = max(values)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--baseline", type=Path, help="another code tree to compare, same run")
    parser.add_argument("--head-load", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.head_load:
        _head_load_child(args.head_load[0], args.head_load[1], float(args.head_load[2]))
        return
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk (apt-get install wrk)")

    load_at_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="ostraca-bench-"))
    settings = Settings(data_dir=tmp, max_blob_bytes=2 * 1024**3)
    upgrade_to_head(settings.sqlalchemy_url)
    base, setup_server = serve_in_thread(create_app(settings))
    with httpx.Client(base_url=base, timeout=120) as client:
        owner = new_identity(client, "institution", "Bench Institute")
        reader: Identity = new_identity(client, "researcher", "Bench Reader")
        client.post("/v1/namespaces", json={"name": "bench"}, headers=owner.headers)
        shard = arrow_shard(200_000)  # a few MiB of Arrow IPC
        large = os.urandom(args.large_mib * 1024 * 1024)
        built = build_manifest(owner.key, "bench/data", [shard, large], chunk_bytes=2 * 1024**2)
        for data in built.blobs.values():
            upload_blob(client, owner, data, namespace="bench", chunk=16 * 1024 * 1024)
        assert publish(client, owner, built).status_code == 201
        grant_access(
            client,
            owner,
            reader,
            "bench/data",
            request=request_access(client, reader, "bench/data"),
        )
    setup_server.should_exit = True
    time.sleep(0.5)
    del large
    shard_digest = built.manifest.shards[0].sha256
    large_digest = built.manifest.shards[1].sha256
    large_size = built.manifest.shards[1].bytes
    shard_path = settings.storage_path / "sha256" / shard_digest
    large_path = settings.storage_path / "sha256" / large_digest
    auth = reader.headers["Authorization"]
    token = auth.removeprefix("Bearer ")

    registry_env = {"OSTRACA_DATA_DIR": str(tmp), "OSTRACA_MAX_BLOB_BYTES": str(2 * 1024**3)}
    variants: list[tuple[str, str, dict[str, str], int]] = []
    scoped = {"registry, 1 worker": True, "registry, 2 workers": True}
    if args.baseline is not None:
        base_env, scoped["before, 1 worker"] = baseline_registry(args.baseline, tmp, registry_env)
        variants.append(("before, 1 worker", "ostraca.server.cli:app_from_env", base_env, 1))
    for label, app, env in (
        ("registry", "ostraca.server.cli:app_from_env", registry_env),
        ("bare FastAPI", "bench_server:bare_from_env", {"BENCH_BARE_FILE": str(shard_path)}),
    ):
        variants += [(f"{label}, {n} worker{'s' * (n > 1)}", app, env, n) for n in (1, 2)]
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in range(args.runs):
        for name, app, env, workers in variants:
            server = ServerProcess(app, env, workers)
            try:
                bare = "bare" in name
                path = blob_url("bench/data", "") if scoped.get(name) else "/v1/blobs/sha256:"
                url = f"{server.url}/blob" if bare else f"{server.url}{path}{shard_digest}"
                rows = raw.setdefault(name, {})
                r = head_load(url, "" if bare else auth, args.seconds)
                rows.setdefault("head", []).append({**r, "load1": os.getloadavg()[0]})
                print(run, name, "head", rows["head"][-1], flush=True)
                r = wrk(url, "GET", "" if bare else auth, args.seconds, len(shard), tmp)
                rows.setdefault("get_64k", []).append({**r, "load1": os.getloadavg()[0]})
                print(run, name, "get_64k", rows["get_64k"][-1], flush=True)
                if not bare and workers == 1:
                    big = f"{path}{large_digest}"
                    r = {
                        "client_MiBps": round(fetch_large(server.url, big, large_size, token), 1),
                        "curl_MiBps": round(curl_large(server.url + big, large_size, token), 1),
                        "disk_MiBps": round(disk_large(large_path), 1),
                    }
                    rows.setdefault("large_get", []).append(r)
                    print(run, name, "large_get", r, flush=True)
            finally:
                server.stop()

    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_at_start": load_at_start,
            "loadavg_at_end": os.getloadavg(),
        },
        "settings": {
            "seconds": args.seconds,
            "runs": args.runs,
            "concurrency": CONCURRENCY,
            "range_bytes": RANGE,
            "shard_bytes": len(shard),
            "large_bytes": large_size,
            "database": "sqlite (WAL)",
            "load": "GET: wrk -t1 -c16; HEAD: asyncio raw HTTP/1.1, 16 connections",
        },
        "rows": {n: {k: summarize(v) for k, v in rows.items()} for n, rows in raw.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "server.json").write_text(json.dumps(results, indent=2) + "\n")

    def cell(r: dict[str, Any], key: str, fmt: str = "{:,.0f}") -> str:
        return f"{fmt.format(r[key])} ({fmt.format(r[key + '_min'])}–{fmt.format(r[key + '_max'])})"

    before = results["rows"].get("before, 1 worker")

    def ratio(r: dict[str, Any], kind: str) -> str:
        return f"{r[kind]['req_per_s'] / before[kind]['req_per_s']:.2f}×" if before else "—"

    lines = [
        "| server | HEAD req/s | HEAD p50 / p99 ms | 64 KiB GET req/s | GET p50 / p99 ms "
        "| errors | HEAD, GET × before | load (1 min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results["rows"].items():
        h, g = rows["head"], rows["get_64k"]
        lines.append(
            f"| {name} | {cell(h, 'req_per_s')} | {h['p50_ms']} / {h['p99_ms']} | "
            f"{cell(g, 'req_per_s')} | {g['p50_ms']} / {g['p99_ms']} | "
            f"{sum(x['errors'] for x in h['runs'] + g['runs'])} | "
            f"{ratio(rows, 'head')}, {ratio(rows, 'get_64k')} | "
            f"{cell(h, 'load1', '{:.1f}')} |"
        )
    lines += [
        "",
        f"One {large_size // 1024**2} MiB authorized GET over loopback (MiB/s):",
        "",
        "| server | `http.client` readinto (the client's bulk path) | curl | page-cache read |",
        "|---|---|---|---|",
    ]
    for name, rows in results["rows"].items():
        if "large_get" in rows:
            lg = rows["large_get"]
            lines.append(
                f"| {name} | {cell(lg, 'client_MiBps')} | {cell(lg, 'curl_MiBps')} | "
                f"{cell(lg, 'disk_MiBps')} |"
            )
    header = (
        f"Loopback, SQLite (WAL), {CONCURRENCY} keep-alive connections for {args.seconds:g} s "
        "per run (GET: `wrk -t1`; HEAD: an asyncio raw-HTTP loop, as wrk cannot do HEAD), "
        f"{os.cpu_count()} CPUs shared by load generator and servers; median of {args.runs} runs "
        "(min–max), rounds interleaved. Registry rows are authorized reads (token lookup, grant "
        "check against the database, an audit row per GET); bare rows serve the same bytes with "
        f"none of that. Load average (1, 5, 15 min) at the start: {load_at_start[0]:.2f}, "
        f"{load_at_start[1]:.2f}, {load_at_start[2]:.2f}; at the end: {os.getloadavg()[0]:.2f} "
        "(the machine is shared with other jobs).\n"
    )
    md_path = RESULTS / "server.md"
    note = ""
    if md_path.exists():
        old = md_path.read_text()
        if "<!-- results -->" in old:
            note = old.split("<!-- results -->")[0]
    if not note:
        note = "# Registry server benchmark\n\n"
    md = note + "<!-- results -->\n" + header + "\n" + "\n".join(lines) + "\n"
    md_path.write_text(md)
    print(md)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
