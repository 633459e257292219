from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ostraca.protocol_spec.errors import DigestMismatchError
from ostraca.server.settings import Settings
from ostraca.server.storage import LocalStorage

from .server_helpers import Identity, MovableClock, assert_problem, login, new_identity, upload_blob


@pytest.fixture
def institution(client: TestClient) -> Identity:
    """An institution owning the namespace ``acme``, the one these tests upload into."""
    who = new_identity(client, "institution", "Acme Institute")
    r = client.post("/v1/namespaces", json={"name": "acme"}, headers=who.headers)
    assert r.status_code == 201, r.text
    return who


def _start(client: TestClient, who: Identity, size: int) -> str:
    r = client.post("/v1/uploads", json={"namespace": "acme", "size": size}, headers=who.headers)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v1/uploads/{r.json()['upload_id']}"
    assert r.json()["offset"] == 0
    upload_id: str = r.json()["upload_id"]
    return upload_id


def _patch(client: TestClient, who: Identity, upload_id: str, offset: int, data: bytes):  # type: ignore[no-untyped-def]
    return client.patch(
        f"/v1/uploads/{upload_id}",
        content=data,
        headers={
            **who.headers,
            "Content-Type": "application/octet-stream",
            "Upload-Offset": str(offset),
        },
    )


def _blob_files(settings: Settings) -> list[str]:
    return sorted(os.listdir(settings.storage_path / "sha256"))


@pytest.fixture
def store() -> str:
    """These tests look into the local blob folder: the local store only."""
    return "local"


def test_resumable_upload(client: TestClient, institution: Identity, settings: Settings) -> None:
    data = os.urandom(300_000)
    digest = hashlib.sha256(data).hexdigest()
    upload_id = _start(client, institution, len(data))
    assert _patch(client, institution, upload_id, 0, data[:100_000]).json()["offset"] == 100_000
    # The connection "drops"; the uploader asks where to resume.
    status = client.get(f"/v1/uploads/{upload_id}", headers=institution.headers).json()
    assert status["offset"] == 100_000
    assert status["size"] == len(data)
    assert _patch(client, institution, upload_id, 100_000, data[100_000:]).status_code == 202
    r = client.put(f"/v1/uploads/{upload_id}?digest=sha256:{digest}", headers=institution.headers)
    assert r.status_code == 201
    assert r.json() == {"digest": f"sha256:{digest}", "size": len(data)}
    assert _blob_files(settings) == [digest]
    assert (settings.storage_path / "sha256" / digest).read_bytes() == data
    assert os.listdir(settings.storage_path / "uploads") == []
    assert r.headers["location"] == f"/v1/namespaces/acme/blobs/sha256:{digest}"
    r = client.head(f"/v1/namespaces/acme/blobs/sha256:{digest}", headers=institution.headers)
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(data))


def test_wrong_offset_is_416_with_the_current_offset(
    client: TestClient, institution: Identity
) -> None:
    upload_id = _start(client, institution, 10)
    assert _patch(client, institution, upload_id, 0, b"12345").status_code == 202
    r = _patch(client, institution, upload_id, 3, b"45678")
    body = assert_problem(r, 416, "range_not_satisfiable")
    assert r.headers["upload-offset"] == "5"
    assert "5" in body["detail"]
    # Finishing early is refused too, and nothing moved.
    r = client.put(f"/v1/uploads/{upload_id}?digest=sha256:{'0' * 64}", headers=institution.headers)
    assert_problem(r, 416, "range_not_satisfiable")
    status = client.get(f"/v1/uploads/{upload_id}", headers=institution.headers).json()
    assert status["offset"] == 5


def test_wrong_digest_discards_the_session(
    client: TestClient, institution: Identity, settings: Settings
) -> None:
    upload_id = _start(client, institution, 4)
    _patch(client, institution, upload_id, 0, b"abcd")
    wrong = hashlib.sha256(b"abce").hexdigest()
    r = client.put(f"/v1/uploads/{upload_id}?digest=sha256:{wrong}", headers=institution.headers)
    assert_problem(r, 422, "digest_mismatch")
    assert _blob_files(settings) == []
    assert os.listdir(settings.storage_path / "uploads") == []
    r = client.get(f"/v1/uploads/{upload_id}", headers=institution.headers)
    assert_problem(r, 404, "not_found")
    r = client.head(f"/v1/namespaces/acme/blobs/sha256:{wrong}", headers=institution.headers)
    assert r.status_code == 404


def test_size_caps(client: TestClient, institution: Identity, settings: Settings) -> None:
    r = client.post(
        "/v1/uploads",
        json={"namespace": "acme", "size": settings.max_blob_bytes + 1},
        headers=institution.headers,
    )
    assert_problem(r, 413, "too_large")
    upload_id = _start(client, institution, 4)
    assert_problem(_patch(client, institution, upload_id, 0, b"abcde"), 413, "too_large")
    assert _patch(client, institution, upload_id, 0, b"abc").json()["offset"] == 3
    assert_problem(_patch(client, institution, upload_id, 3, b"de"), 413, "too_large")
    assert client.get(f"/v1/uploads/{upload_id}", headers=institution.headers).json()["offset"] == 3


def test_dedup_via_head_and_finishing_an_existing_blob(
    client: TestClient, institution: Identity, settings: Settings
) -> None:
    data = b"the same bytes twice"
    digest = hashlib.sha256(data).hexdigest()
    url = f"/v1/namespaces/acme/blobs/sha256:{digest}"
    assert client.head(url, headers=institution.headers).status_code == 404
    upload_blob(client, institution, data)
    assert client.head(url, headers=institution.headers).status_code == 200
    # Uploading it again anyway: accepted, and the stored blob is unchanged.
    assert upload_blob(client, institution, data) == digest
    assert _blob_files(settings) == [digest]


def test_uploads_belong_to_their_uploader(client: TestClient, institution: Identity) -> None:
    other = new_identity(client, "institution", "Globex")
    upload_id = _start(client, institution, 3)
    assert_problem(client.get(f"/v1/uploads/{upload_id}", headers=other.headers), 404, "not_found")
    assert_problem(_patch(client, other, upload_id, 0, b"abc"), 404, "not_found")
    r = client.delete(f"/v1/uploads/{upload_id}", headers=other.headers)
    assert_problem(r, 404, "not_found")
    assert client.delete(f"/v1/uploads/{upload_id}", headers=institution.headers).status_code == 204
    r = client.get(f"/v1/uploads/{upload_id}", headers=institution.headers)
    assert_problem(r, 404, "not_found")


def test_researchers_cannot_upload(client: TestClient, researcher: Identity) -> None:
    r = client.post(
        "/v1/uploads", json={"namespace": "acme", "size": 3}, headers=researcher.headers
    )
    assert_problem(r, 403, "access_denied")


def test_uploads_go_into_an_own_namespace(client: TestClient, institution: Identity) -> None:
    other = new_identity(client, "institution", "Globex")
    r = client.post("/v1/uploads", json={"namespace": "acme", "size": 3}, headers=other.headers)
    assert "another institution" in assert_problem(r, 403, "access_denied")["detail"]
    r = client.post("/v1/uploads", json={"namespace": "nope", "size": 3}, headers=other.headers)
    assert_problem(r, 404, "not_found")
    r = client.post("/v1/uploads", json={"size": 3}, headers=institution.headers)
    assert r.status_code == 422


def test_abandoned_sessions_expire_and_are_cleaned_up(
    client: TestClient, institution: Identity, clock: MovableClock, settings: Settings
) -> None:
    upload_id = _start(client, institution, 10)
    _patch(client, institution, upload_id, 0, b"12345")
    partial = settings.storage_path / "uploads" / upload_id
    assert partial.exists()
    clock.advance(86401)
    institution.token = login(client, institution.key)["token"]
    # Starting another upload sweeps the abandoned one with its partial data.
    fresh = _start(client, institution, 1)
    assert not partial.exists()
    assert sorted(os.listdir(settings.storage_path / "uploads")) == [fresh]
    r = client.get(f"/v1/uploads/{upload_id}", headers=institution.headers)
    assert_problem(r, 404, "not_found")


def test_chunk_content_type_and_offset_header(client: TestClient, institution: Identity) -> None:
    upload_id = _start(client, institution, 3)
    r = client.patch(
        f"/v1/uploads/{upload_id}",
        content=b"abc",
        headers={**institution.headers, "Content-Type": "text/plain", "Upload-Offset": "0"},
    )
    assert_problem(r, 415, "unsupported_media_type")
    r = client.patch(
        f"/v1/uploads/{upload_id}",
        content=b"abc",
        headers={**institution.headers, "Content-Type": "application/octet-stream"},
    )
    assert_problem(r, 422, "malformed")
    r = client.put(f"/v1/uploads/{upload_id}?digest=md5:abc", headers=institution.headers)
    assert_problem(r, 422, "malformed")
    assert client.get(f"/v1/uploads/{upload_id}", headers=institution.headers).json()["offset"] == 0


def test_no_partial_blob_under_a_final_name(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.start_upload("a" * 32)
    writer = storage.open_writer("a" * 32, 0)
    writer.write(b"hello")
    writer.close()
    good = hashlib.sha256(b"hello").hexdigest()
    with pytest.raises(DigestMismatchError):
        storage.finalize("a" * 32, hashlib.sha256(b"hellp").hexdigest(), 5)
    assert storage.size(good) is None
    assert list((tmp_path / "sha256").iterdir()) == []
