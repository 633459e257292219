"""The upload quota per principal and the idle expiry of upload sessions, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from ostraca.server.app import create_app
from ostraca.server.settings import Settings

from ..registry_helpers import serve_app
from ..server.server_helpers import Identity, MovableClock, assert_problem, new_identity
from .security_helpers import snapshot

MIB = 1024 * 1024


@pytest.fixture
def quota_settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        storage_url=f"file://{tmp_path / 'blobs'}",
        max_blob_bytes=2 * MIB,
        max_open_upload_bytes=3 * MIB,
        upload_idle_seconds=600,
    )


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def quota_http(quota_settings: Settings, clock: MovableClock) -> Iterator[httpx.Client]:
    with (
        serve_app(create_app(quota_settings, clock=clock)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        yield http


@pytest.fixture
def owner(quota_http: httpx.Client) -> Identity:
    who = new_identity(quota_http, "institution", "Acme Institute")
    r = quota_http.post("/v1/namespaces", json={"name": "acme"}, headers=who.headers)
    assert r.status_code == 201, r.text
    return who


def _start(http: httpx.Client, who: Identity, size: int) -> httpx.Response:
    return http.post("/v1/uploads", json={"size": size, "namespace": "acme"}, headers=who.headers)


def test_quota_counts_open_sessions(
    quota_http: httpx.Client, quota_settings: Settings, owner: Identity
) -> None:
    first = _start(quota_http, owner, 2 * MIB)
    assert first.status_code == 201, first.text
    before = snapshot(quota_settings)
    body = assert_problem(_start(quota_http, owner, 2 * MIB), 413, "too_large")
    assert "quota" in body["detail"]
    assert before.changes(snapshot(quota_settings)) == {}
    # Another principal has its own quota; a cancelled session frees the owner's.
    other = new_identity(quota_http, "institution", "Globex Labs")
    r = quota_http.post("/v1/namespaces", json={"name": "globex"}, headers=other.headers)
    assert r.status_code == 201, r.text
    r = quota_http.post(
        "/v1/uploads", json={"size": 2 * MIB, "namespace": "globex"}, headers=other.headers
    )
    assert r.status_code == 201, r.text
    upload_id = first.json()["upload_id"]
    assert quota_http.delete(f"/v1/uploads/{upload_id}", headers=owner.headers).status_code == 204
    assert _start(quota_http, owner, 2 * MIB).status_code == 201


def test_idle_sessions_expire_and_are_purged(
    quota_http: httpx.Client, quota_settings: Settings, owner: Identity, clock: MovableClock
) -> None:
    r = _start(quota_http, owner, MIB)
    assert r.status_code == 201, r.text
    upload = r.json()
    assert upload["expires"] <= (clock() + timedelta(seconds=600)).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {**owner.headers, "Content-Type": "application/octet-stream", "Upload-Offset": "0"}
    clock.offset += timedelta(seconds=500)
    r = quota_http.patch(f"/v1/uploads/{upload['upload_id']}", content=b"x" * 10, headers=headers)
    assert r.status_code == 202, r.text  # touched: the idle clock starts again
    clock.offset += timedelta(seconds=500)
    r = quota_http.get(f"/v1/uploads/{upload['upload_id']}", headers=owner.headers)
    assert r.status_code == 200, r.text
    clock.offset += timedelta(seconds=700)
    r = quota_http.get(f"/v1/uploads/{upload['upload_id']}", headers=owner.headers)
    assert_problem(r, 404, "not_found")
    # Expired: no longer counted (2 + 1 MiB fill the 3 MiB quota), and purged with its data.
    assert _start(quota_http, owner, 2 * MIB).status_code == 201
    assert _start(quota_http, owner, MIB).status_code == 201
    assert_problem(_start(quota_http, owner, 1), 413, "too_large")
    assert not list((quota_settings.storage_path / "uploads").glob(upload["upload_id"]))
