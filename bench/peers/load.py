"""The registry under load, on loopback: authorized blob ``HEAD`` and ranged ``GET`` (64 KiB) of
the Ostraca registry with 1, 8 and 64 concurrent keep-alive connections, side by side with a bare
FastAPI endpoint doing the same (same bearer check, same uvicorn). ``GET`` is driven by ``wrk``;
``HEAD`` by a small asyncio client (``python -m bench.peers.load``), because wrk 4.1 waits for a
body after a HEAD response that carries Content-Length and so never completes one. Bounded: each
cell runs ``seconds``; the generator is killed after twice that."""

# Imports inside functions are deliberate: each measurement process loads only the system it
# measures (peer libraries, torch, Ostraca), and the orchestrator runs without them.
# ruff: noqa: PLC0415

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.peers.common import TOKEN
from bench.peers.serve import BareFastAPI

CONCURRENCY = (1, 8, 64)
RANGE = "bytes=0-65535"


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v


def wrk(
    url: str, *, method: str, conns: int, seconds: float, headers: dict[str, str]
) -> dict[str, Any]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(f'wrk.method = "{method}"\n')
    cmd = [
        "wrk",
        "-t",
        str(min(2, conns)),
        "-c",
        str(conns),
        "-d",
        f"{seconds:g}s",
        "--latency",
        "-s",
        str(script),
        "--timeout",
        "5s",
    ]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(url)
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=seconds * 2 + 10, check=False
        ).stdout
    finally:
        script.unlink(missing_ok=True)
    res: dict[str, Any] = {"conns": conns, "method": method}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        res[f"p{pct}_ms"] = _ms(m.group(1)) if m else None
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    res["errors"] = errors
    if res["rps"] is None:
        res["raw"] = out[-500:]
    return res


def pyload(
    url: str, *, method: str, conns: int, seconds: float, headers: dict[str, str]
) -> dict[str, Any]:
    """The asyncio generator in a fresh process (its own core budget, like wrk)."""
    args = json.dumps(
        {"url": url, "method": method, "conns": conns, "seconds": seconds, "headers": headers}
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bench.peers.load", args],
        capture_output=True,
        text=True,
        timeout=seconds * 2 + 20,
        check=False,
    )
    try:
        res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {
            "conns": conns,
            "method": method,
            "rps": None,
            "errors": -1,
            "raw": (proc.stdout + proc.stderr)[-500:],
        }
    return res


async def _generate(
    url: str, method: str, conns: int, seconds: float, headers: dict[str, str]
) -> dict[str, Any]:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    req = (f"{method} {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\n{head}\r\n").encode()
    lat: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def one() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
        try:
            while loop.time() < deadline:
                t0 = loop.time()
                writer.write(req)
                hdr = await reader.readuntil(b"\r\n\r\n")
                status = int(hdr.split(b" ", 2)[1])
                m = re.search(rb"(?i)content-length:\s*(\d+)", hdr)
                if method != "HEAD" and m:
                    await reader.readexactly(int(m.group(1)))
                lat.append(loop.time() - t0)
                if not 200 <= status < 300:
                    errors += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
        finally:
            writer.close()

    t0 = loop.time()
    await asyncio.gather(*(one() for _ in range(conns)))
    wall = loop.time() - t0
    lat.sort()
    n = len(lat)
    return {
        "conns": conns,
        "method": method,
        "requests": n,
        "rps": n / wall if wall else None,
        "p50_ms": lat[n // 2] * 1000 if n else None,
        "p99_ms": lat[min(n - 1, int(n * 0.99))] * 1000 if n else None,
        "errors": errors,
        "generator": "python asyncio",
    }


def run_all(
    *, registry: Any, ostraca: dict[str, Any] | None, seconds: float, log: Callable[[str], None]
) -> dict[str, Any]:
    out: dict[str, Any] = {"seconds_per_cell": seconds, "range": RANGE, "rows": []}
    targets: list[tuple[str, str, dict[str, str]]] = []
    if ostraca is not None:
        from ostraca.client.api import RegistryClient
        from ostraca.client.config import load_config

        with RegistryClient(load_config(home=Path(ostraca["home"]), registry=registry.url)) as c:
            headers = dict(c.auth_headers())
        blob = ostraca["shards"][0]
        url = f"{registry.url}/v1/datasets/{ostraca['dataset']}/blobs/sha256:{blob}"
        targets.append(("ostraca registry", url, headers))
    else:
        out["note"] = "Ostraca not available: bare FastAPI only"
    with BareFastAPI(sys.executable) as bare:
        targets.append(("bare FastAPI", f"{bare.base}/blob", {"Authorization": f"Bearer {TOKEN}"}))
        for name, url, hdrs in targets:
            for method in ("HEAD", "GET"):
                h = dict(hdrs)
                if method == "GET":
                    h["Range"] = RANGE
                for conns in CONCURRENCY:
                    gen = pyload if method == "HEAD" else wrk
                    r = gen(url, method=method, conns=conns, seconds=seconds, headers=h)
                    r.setdefault("generator", "wrk")
                    r["server"] = name
                    out["rows"].append(r)
                    log(
                        f"  load {name} {method} c={conns}: {r['rps']} req/s p50 {r['p50_ms']} "
                        f"p99 {r['p99_ms']} ms errors {r['errors']}"
                    )
    return out


if __name__ == "__main__":
    a = json.loads(sys.argv[1])
    print(
        json.dumps(
            asyncio.run(_generate(a["url"], a["method"], a["conns"], a["seconds"], a["headers"]))
        )
    )
