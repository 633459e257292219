"""``ostraca server run --workers 2`` (the installed entry point, on SQLite and PostgreSQL):
every worker's requests in every scrape of ``/metrics`` (prometheus-client multiprocess mode),
and one committed audit event per authorized read, whichever worker served it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from .server_helpers import (
    Identity,
    blob_url,
    grant_access,
    new_identity,
    publish_dataset,
    request_access,
)
from .storage_fixtures import free_port

BLOB_ROUTE = (
    'ostraca_http_requests_total{method="GET",'
    'route="/v1/datasets/{ns}/{name}/blobs/{digest}",status="206"}'
)


@dataclass
class Workers:
    url: str
    metrics_dir: Path


@pytest.fixture
def workers(database_url: str, tmp_path: Path) -> Iterator[Workers]:
    port, metrics_dir = free_port(), tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSTRACA_")}
    env.update(
        OSTRACA_DATA_DIR=str(tmp_path / "data"),
        OSTRACA_DATABASE_URL=database_url,
        OSTRACA_STORAGE_URL=f"file://{tmp_path / 'blobs'}",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    (metrics_dir / "counter_999999.db").write_bytes(b"stale")  # from an earlier run: wiped
    command = [sys.executable, "-m", "ostraca.server", "run", "--workers", "2", "--port", str(port)]
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.flush()
            raise RuntimeError((tmp_path / "server.log").read_text()[-3000:])
        time.sleep(0.1)
    try:
        yield Workers(url=url, metrics_dir=metrics_dir)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _per_worker(metrics_dir: Path) -> dict[str, float]:
    """Blob GETs answered 206, per worker process (its own file in the multiprocess dir)."""
    out = {}
    for path in sorted(metrics_dir.glob("counter_*.db")):
        values = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
        out[path.name] = sum(
            v for key, v, *_ in values if '"status": "206"' in key and "blobs" in key
        )
    return out


def _read(url: str, reader: Identity, at: int) -> str:
    # A fresh connection each time, so the kernel may hand it to either worker.
    r = httpx.get(url, headers={**reader.headers, "Range": f"bytes={at}-{at}"}, timeout=30)
    assert r.status_code == 206, r.text
    return r.headers["content-range"]


def test_two_workers_share_metrics_and_audit_every_read(workers: Workers) -> None:
    assert not (workers.metrics_dir / "counter_999999.db").exists()
    with httpx.Client(base_url=workers.url, timeout=30) as http:
        owner = new_identity(http, "institution", "Acme Institute")
        reader = new_identity(http, "researcher", "Ada")
        built = publish_dataset(http, owner, "acme/books", shards=1)
        grant_access(
            http, owner, reader, "acme/books", request=request_access(http, reader, "acme/books")
        )
    shard = built.manifest.shards[0]
    url = workers.url + blob_url("acme/books", shard.sha256)
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        while sent < 400:
            list(pool.map(lambda at: _read(url, reader, at), range(sent, sent + 40)))
            sent += 40
            if sum(1 for n in _per_worker(workers.metrics_dir).values() if n) >= 2:
                break
    per_worker = _per_worker(workers.metrics_dir)
    assert sum(1 for n in per_worker.values() if n) == 2, per_worker
    for _ in range(4):  # each scrape, whichever worker answers it, counts both
        text = httpx.get(f"{workers.url}/metrics", timeout=10).text
        line = next(ln for ln in text.splitlines() if ln.startswith(BLOB_ROUTE))
        assert float(line.rsplit(" ", 1)[1]) == sent
    with httpx.Client(base_url=workers.url, timeout=30) as http:
        items: list[str] = []
        after = 0
        while page := http.get(
            "/v1/datasets/acme/books/audit",
            params={"after": after, "limit": 1000},
            headers=owner.headers,
        ).json()["items"]:
            items += [
                e["detail"]
                for e in page
                if e["action"] == "read" and e["principal"] == reader.keyid
            ]
            after = page[-1]["id"]
    expected = {f"sha256:{shard.sha256} bytes {at}-{at}/{shard.bytes}" for at in range(sent)}
    assert sorted(items) == sorted(expected)
