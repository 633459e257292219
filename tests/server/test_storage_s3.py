"""The blob-store contract on both backends (local directory, S3 on moto's server over HTTP),
the S3 faults (unreachable, refused or missing credentials) and the registry on S3."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from ostraca.protocol_spec.errors import (
    DigestMismatchError,
    MalformedError,
    NotFoundError,
    UnavailableError,
)
from ostraca.server.app import create_app
from ostraca.server.settings import Settings
from ostraca.server.storage import BlobStorage
from ostraca.server.storage_s3 import MIN_PART_SIZE, S3Storage, parse_s3_url

from .server_helpers import (
    MovableClock,
    blob_url,
    grant_access,
    login,
    new_identity,
    publish_dataset,
    request_access,
    upload_blob,
)
from .storage_fixtures import (
    S3_REGION,
    StoreUnderTest,
    blob_store,
    free_port,
    local_store,
    moto_endpoint,
    moto_process,
    open_s3,
    s3_store,
    s3_url,
)

__all__ = ["blob_store", "moto_endpoint", "s3_url"]

MIB = 1024 * 1024
PART = MIN_PART_SIZE


def _write(storage: BlobStorage, upload_id: str, offset: int, data: bytes) -> None:
    writer = storage.open_writer(upload_id, offset)
    for at in range(0, len(data), MIB):
        writer.write(data[at : at + MIB])
    writer.close()


def _upload(storage: BlobStorage, upload_id: str, data: bytes, pieces: list[int]) -> str:
    """Start, write ``data`` cut at ``pieces`` (one writer each), finalize; the hex digest."""
    storage.start_upload(upload_id)
    bounds = [0, *pieces, len(data)]
    for start, stop in itertools.pairwise(bounds):
        _write(storage, upload_id, start, data[start:stop])
    digest = hashlib.sha256(data).hexdigest()
    storage.finalize(upload_id, digest, len(data))
    return digest


def _read(storage: BlobStorage, digest: str, start: int, end: int) -> bytes:
    return b"".join(storage.read_range(digest, start, end))


# --- the contract, on both backends ----------------------------------------------------------


def test_pieces_across_parts_become_one_blob(blob_store: StoreUnderTest) -> None:
    data = os.urandom(2 * PART + 3 * MIB)
    digest = _upload(blob_store.storage, "a" * 32, data, [3 * MIB, 3 * MIB + PART + 1])
    assert blob_store.blobs() == [digest]
    assert blob_store.staged() == []
    assert blob_store.storage.size(digest) == len(data)
    assert _read(blob_store.storage, digest, 0, len(data) - 1) == data
    assert _read(blob_store.storage, digest, PART - 7, PART + 7) == data[PART - 7 : PART + 8]


def test_a_failed_writer_is_overwritten_from_the_recorded_offset(
    blob_store: StoreUnderTest,
) -> None:
    """A PATCH that failed after writing past a part boundary (its offset never recorded):
    the next writer, opened at the recorded offset, replaces what it wrote."""
    data = os.urandom(2 * PART + MIB)
    storage, upload_id = blob_store.storage, "b" * 32
    storage.start_upload(upload_id)
    recorded = PART - MIB
    _write(storage, upload_id, 0, data[:recorded])
    _write(storage, upload_id, recorded, os.urandom(PART))  # the failed one: garbage
    _write(storage, upload_id, recorded, data[recorded:])
    digest = hashlib.sha256(data).hexdigest()
    storage.finalize(upload_id, digest, len(data))
    assert _read(storage, digest, 0, len(data) - 1) == data
    assert blob_store.staged() == []


def test_another_worker_finalizes_by_reading_back(blob_store: StoreUnderTest) -> None:
    """No hash state is shared between processes: a second handle re-hashes what is staged,
    and refuses bytes that are not the digest."""
    data = os.urandom(PART + 123)
    storage = blob_store.storage
    for upload_id, claimed in (("c" * 32, b"other bytes"), ("d" * 32, data)):
        storage.start_upload(upload_id)
        _write(storage, upload_id, 0, data)
        other = blob_store.reopen()
        if claimed != data:
            with pytest.raises(DigestMismatchError):
                other.finalize(upload_id, hashlib.sha256(claimed).hexdigest(), len(data))
            assert blob_store.blobs() == []
            assert blob_store.staged() == []
        else:
            other.finalize(upload_id, hashlib.sha256(data).hexdigest(), len(data))
    assert blob_store.blobs() == [hashlib.sha256(data).hexdigest()]


@pytest.mark.parametrize("size", [0, 5, PART, PART + 5])
def test_a_mismatch_leaves_nothing_anywhere(blob_store: StoreUnderTest, size: int) -> None:
    storage, upload_id = blob_store.storage, "e" * 32
    data = os.urandom(size)
    storage.start_upload(upload_id)
    _write(storage, upload_id, 0, data)
    with pytest.raises(DigestMismatchError):
        storage.finalize(upload_id, hashlib.sha256(data + b"x").hexdigest(), size)
    assert blob_store.blobs() == []
    assert blob_store.staged() == []
    assert storage.size(hashlib.sha256(data).hexdigest()) is None


def test_the_same_bytes_twice_keep_one_blob(blob_store: StoreUnderTest) -> None:
    data = os.urandom(1000)
    first = _upload(blob_store.storage, "f" * 32, data, [])
    second = _upload(blob_store.storage, "0" * 32, data, [500])
    assert first == second
    assert blob_store.blobs() == [first]
    assert blob_store.staged() == []


def test_an_empty_blob(blob_store: StoreUnderTest) -> None:
    digest = _upload(blob_store.storage, "1" * 32, b"", [])
    assert blob_store.storage.size(digest) == 0


def test_a_discarded_upload_leaves_nothing(blob_store: StoreUnderTest) -> None:
    storage, upload_id = blob_store.storage, "2" * 32
    storage.start_upload(upload_id)
    _write(storage, upload_id, 0, os.urandom(PART + MIB))  # one part sent, a tail kept
    assert blob_store.staged() != []
    storage.discard_upload(upload_id)
    assert blob_store.staged() == []
    with pytest.raises(NotFoundError):
        storage.open_writer(upload_id, 0)
    storage.discard_upload(upload_id)  # twice is fine


def test_unknown_uploads_blobs_and_bad_names(blob_store: StoreUnderTest) -> None:
    storage = blob_store.storage
    with pytest.raises(NotFoundError):
        storage.open_writer("3" * 32, 0)
    missing = "4" * 64
    assert storage.size(missing) is None
    storage.delete(missing)
    with pytest.raises(MalformedError):
        storage.size("../../etc/passwd")
    with pytest.raises(MalformedError):
        storage.start_upload("../x")
    storage.check()


def test_local_blobs_are_readable_by_the_group(tmp_path: Path) -> None:
    """nginx's workers, in the registry's group, can send a stored blob (accel); nobody else."""
    store = local_store(tmp_path)
    digest = _upload(store.storage, "8" * 32, b"for nginx", [])
    assert (tmp_path / "sha256" / digest).stat().st_mode & 0o777 == 0o640


def test_delete(blob_store: StoreUnderTest) -> None:
    digest = _upload(blob_store.storage, "5" * 32, b"gone soon", [])
    blob_store.storage.delete(digest)
    assert blob_store.storage.size(digest) is None
    assert blob_store.blobs() == []


# --- S3 only ---------------------------------------------------------------------------------


def test_s3_urls() -> None:
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b/")
    for bad in ("file:///x", "s3:///nobucket", "s3://b/p?x=1"):
        with pytest.raises(MalformedError):
            parse_s3_url(bad)
    with pytest.raises(MalformedError, match="part size"):
        S3Storage("s3://bucket", part_size=MIB)


def test_presigned_read_names_one_object_range_and_expiry(moto_endpoint: str, s3_url: str) -> None:
    storage = open_s3(moto_endpoint, s3_url)
    data = os.urandom(10_000)
    digest = _upload(storage, "6" * 32, data, [])
    url = storage.presign_read(digest, 100, 4099, 60)
    assert f"/sha256/{digest}?" in url
    assert "X-Amz-Expires=60" in url
    assert "X-Amz-SignedHeaders=host%3Brange" in url  # the range is signed
    r = httpx.get(url, headers={"Range": "bytes=100-4099"})
    assert r.status_code == 206
    assert r.content == data[100:4100]


def test_unreachable_store_is_unavailable(s3_url: str) -> None:
    dead = open_s3(f"http://127.0.0.1:{free_port()}", s3_url, timeout_seconds=1)
    for action in (
        dead.check,
        lambda: dead.size("7" * 64),
        lambda: dead.start_upload("7" * 32),
        lambda: b"".join(dead.read_range("7" * 64, 0, 10)),
    ):
        with pytest.raises(UnavailableError, match="unreachable"):
            action()


def test_a_missing_bucket_is_unavailable(moto_endpoint: str) -> None:
    with pytest.raises(UnavailableError, match="no bucket"):
        open_s3(moto_endpoint, "s3://ostraca-no-such-bucket").check()


def test_missing_credentials_are_unavailable(
    moto_endpoint: str, s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    storage = S3Storage(s3_url, endpoint_url=moto_endpoint, region=S3_REGION)
    with pytest.raises(UnavailableError, match="no credentials"):
        storage.check()


@pytest.fixture
def strict_moto(tmp_path: Path) -> Iterator[str]:
    """A moto server (its own process) that checks every request's credentials."""
    with moto_process(tmp_path / "moto.log", INITIAL_NO_AUTH_ACTION_COUNT="0") as (url, _):
        yield url


def test_refused_credentials_are_unavailable(strict_moto: str) -> None:
    with pytest.raises(UnavailableError, match="refused the registry's credentials"):
        open_s3(strict_moto, "s3://ostraca-any").check()


# --- the registry on S3 ----------------------------------------------------------------------


@pytest.fixture
def s3_client(
    settings: Settings, clock: MovableClock, moto_endpoint: str, s3_url: str
) -> Iterator[TestClient]:
    app = create_app(settings, clock=clock, storage=open_s3(moto_endpoint, s3_url))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_registry_uploads_serves_and_sweeps_on_s3(
    s3_client: TestClient, clock: MovableClock, moto_endpoint: str, s3_url: str
) -> None:
    store = s3_store(moto_endpoint, s3_url)
    owner = new_identity(s3_client, "institution", "Acme Institute")
    reader = new_identity(s3_client, "researcher", "Ada")
    built = publish_dataset(s3_client, owner, "acme/books")
    grant_access(
        s3_client,
        owner,
        reader,
        "acme/books",
        request=request_access(s3_client, reader, "acme/books"),
    )
    assert store.blobs() == sorted(built.blobs)
    for digest, data in built.blobs.items():
        r = s3_client.get(blob_url("acme/books", digest), headers=reader.headers)
        assert r.status_code == 200
        assert r.content == data
        r = s3_client.get(
            blob_url("acme/books", digest), headers={**reader.headers, "Range": "bytes=3-9"}
        )
        assert (r.status_code, r.content) == (206, data[3:10])
    big = os.urandom(PART + 3 * MIB)  # multipart through the HTTP upload protocol
    digest = upload_blob(s3_client, owner, big, chunk=2 * MIB)
    assert digest in store.blobs()
    assert store.staged() == []
    # An abandoned session is swept, multipart upload and staged tail included.
    r = s3_client.post(
        "/v1/uploads", json={"namespace": "acme", "size": PART + 2 * MIB}, headers=owner.headers
    )
    upload_id = r.json()["upload_id"]
    r = s3_client.patch(
        f"/v1/uploads/{upload_id}",
        content=os.urandom(PART + 1),
        headers={**owner.headers, "Content-Type": "application/octet-stream", "Upload-Offset": "0"},
    )
    assert r.status_code == 202, r.text
    assert store.staged() != []
    clock.advance(86401)
    owner.token = login(s3_client, owner.key)["token"]
    r = s3_client.post("/v1/uploads", json={"namespace": "acme", "size": 1}, headers=owner.headers)
    fresh = r.json()["upload_id"]
    assert store.staged() == [f"{fresh}/tail/{0:020d}"]


def test_registry_on_an_unreachable_store_answers_503(
    settings: Settings, clock: MovableClock, s3_url: str
) -> None:
    dead = open_s3(f"http://127.0.0.1:{free_port()}", s3_url, timeout_seconds=1)
    with TestClient(
        create_app(settings, clock=clock, storage=dead), raise_server_exceptions=False
    ) as c:
        owner = new_identity(c, "institution", "Acme Institute")
        assert (
            c.post("/v1/namespaces", json={"name": "acme"}, headers=owner.headers).status_code
            == 201
        )
        r = c.post("/v1/uploads", json={"namespace": "acme", "size": 3}, headers=owner.headers)
        assert r.status_code == 503
        assert r.json()["code"] == "unavailable"
        health = c.get("/healthz")
        assert health.status_code == 503
        assert health.json()["storage"] == "error: unavailable"


OSTRACA = str(Path(sys.executable).with_name("ostraca"))


@pytest.mark.parametrize("fault", ["refused", "no bucket", "unreachable"])
def test_a_bad_s3_setting_stops_the_start_in_one_line(
    strict_moto: str, moto_endpoint: str, tmp_path: Path, fault: str
) -> None:
    endpoint, url = {
        "refused": (strict_moto, "s3://ostraca-any"),
        "no bucket": (moto_endpoint, "s3://ostraca-no-such-bucket"),
        "unreachable": (f"http://127.0.0.1:{free_port()}", "s3://ostraca-any"),
    }[fault]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSTRACA_")}
    env.update(
        OSTRACA_DATA_DIR=str(tmp_path),
        OSTRACA_STORAGE_URL=url,
        OSTRACA_S3_ENDPOINT_URL=endpoint,
        OSTRACA_S3_REGION=S3_REGION,
        OSTRACA_S3_ACCESS_KEY_ID="wrong",
        OSTRACA_S3_SECRET_ACCESS_KEY="wrong-secret",
    )
    for workers in ("1", "2"):
        proc = subprocess.run(
            [OSTRACA, "server", "run", "--port", str(free_port()), "--workers", workers],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 1, proc.stderr
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("error [unavailable] "), lines[0]
        assert "wrong-secret" not in proc.stderr
