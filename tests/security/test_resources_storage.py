"""A full blob store and a client that hangs up, against a real registry over HTTP.

The store is a 2 MiB tmpfs mounted for the test (the suite runs as root; a failed mount fails
the test): writing past it gives the kernel's own ENOSPC, not a simulation.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ostraca.protocol_spec import SigningKey
from ostraca.server.migrate import upgrade_to_head
from ostraca.server.settings import Settings

from ..server.server_helpers import (
    Identity,
    assert_problem,
    grant_access,
    login,
    new_identity,
    publish_dataset,
    registration_body,
    request_access,
)
from .security_helpers import blob_route, serve, snapshot
from .test_resources import _connect

MIB = 1024 * 1024


@pytest.fixture
def tiny_store(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "blobs"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(root)], check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=True)


@pytest.fixture
def tiny_settings(database_url: str, tmp_path: Path, tiny_store: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        storage_url=f"file://{tiny_store}",
        max_blob_bytes=8 * MIB,
    )


def _start(http: httpx.Client, who: Identity, size: int) -> str:
    r = http.post("/v1/uploads", json={"size": size, "namespace": "acme"}, headers=who.headers)
    assert r.status_code == 201, r.text
    upload_id: str = r.json()["upload_id"]
    return upload_id


def _patch(http: httpx.Client, who: Identity, upload_id: str, data: bytes) -> httpx.Response:
    headers = {**who.headers, "Content-Type": "application/octet-stream", "Upload-Offset": "0"}
    return http.patch(f"/v1/uploads/{upload_id}", content=data, headers=headers)


def test_full_store_is_507_and_the_rest_keeps_answering(tiny_settings: Settings) -> None:
    with serve(tiny_settings) as reg, httpx.Client(base_url=reg.url, timeout=30) as http:
        owner = new_identity(http, "institution", "Acme Institute")
        reader = new_identity(http, "researcher", "Ada Researcher")
        built = publish_dataset(http, owner, "acme/books")
        grant_access(
            http, owner, reader, "acme/books", request=request_access(http, reader, "acme/books")
        )
        upload_id = _start(http, owner, 3 * MIB)
        before = snapshot(tiny_settings)
        body = assert_problem(
            _patch(http, owner, upload_id, b"\0" * (3 * MIB)), 507, "insufficient_storage"
        )
        assert "full" in body["detail"]
        assert before.changes(snapshot(tiny_settings)) == {}
        # Full: logins, metadata, blob reads and healthz still answer.
        assert login(http, reader.key)["token"]
        assert http.get("/v1/datasets").json()["total"] == 1
        assert http.get("/v1/datasets/acme/books").status_code == 200
        shard = built.manifest.shards[0].sha256
        path = blob_route(http.get("/openapi.json").json())
        blob = path.format(ns="acme", name="books", digest=f"sha256:{shard}")
        assert http.get(blob, headers=reader.headers).status_code == 200
        health = http.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "degraded", "database": "ok", "storage": "full"}
        # Once the partial upload is cancelled there is room again.
        assert http.delete(f"/v1/uploads/{upload_id}", headers=owner.headers).status_code == 204
        assert http.get("/healthz").json()["storage"] == "ok"


def test_client_disconnect_mid_upload_is_not_an_error(
    tiny_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with serve(tiny_settings) as reg, httpx.Client(base_url=reg.url, timeout=30) as http:
        owner = new_identity(http, "institution", "Acme Institute")
        r = http.post("/v1/namespaces", json={"name": "acme"}, headers=owner.headers)
        assert r.status_code == 201, r.text
        upload_id = _start(http, owner, MIB)
        before = snapshot(tiny_settings)
        sock = _connect(reg.url)
        sock.sendall(
            f"PATCH /v1/uploads/{upload_id} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {owner.token}\r\nContent-Type: application/octet-stream\r\n"
            f"Upload-Offset: 0\r\nContent-Length: {MIB}\r\n\r\n".encode()
            + b"\0" * (100 * 1024)
        )
        time.sleep(0.2)
        sock.close()
        counted = 'route="/v1/uploads/{upload_id}",status="499"'
        deadline = time.monotonic() + 10
        while counted not in http.get("/metrics").text:
            assert time.monotonic() < deadline, "the disconnect was never counted"
            time.sleep(0.05)
        metrics = http.get("/metrics").text
        assert 'status="500"' not in metrics
        assert http.get(f"/v1/uploads/{upload_id}", headers=owner.headers).json()["offset"] == 0
        changes = before.changes(snapshot(tiny_settings))
        assert changes == {}, changes
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until its file system is full."""
    with contextlib.suppress(OSError), path.open("wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()


def test_full_database_disk_is_507(tmp_path: Path, tiny_store: Path) -> None:
    """SQLite's "database or disk is full" is a 507 too, not a 500; reads still answer."""
    settings = Settings(data_dir=tiny_store / "data", storage_url=f"file://{tmp_path / 'store'}")
    settings.data_dir.mkdir()
    upgrade_to_head(settings.database_url)
    with serve(settings) as reg, httpx.Client(base_url=reg.url, timeout=30) as http:
        assert http.get("/v1/datasets").json()["total"] == 0
        _fill(tiny_store / "filler")
        before = snapshot(settings)
        key = SigningKey.generate()
        r = http.post("/v1/principals", json=registration_body(key, name="Ada", kind="researcher"))
        assert_problem(r, 507, "insufficient_storage")
        assert http.get("/v1/datasets").json()["total"] == 0
        assert before.changes(snapshot(settings)) == {}
