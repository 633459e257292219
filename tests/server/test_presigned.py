"""Pre-signed reads (``OSTRACA_BLOB_DELIVERY=presign``) end to end: the registry on S3 (moto's
server, behind :mod:`.s3_front`, which refuses expired URLs as S3 does and injects faults), the
client's :class:`~ostraca.client.fetch.BlobFetcher` following the redirect with every chunk
verified, URL expiry mid-shard, short and wrong bodies."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ostraca.client import open_dataset
from ostraca.server.app import create_app
from ostraca.server.settings import Settings

from ..client.client_helpers import make_identity, sample_table
from ..client.stream_helpers import grant_access as grant_dataset
from ..registry_helpers import Registry, publish_as
from ..security.security_helpers import serve
from .delivery_helpers import dataset_fetcher, fetch_verified, publish_shards
from .s3_front import S3Front, s3_front
from .server_helpers import (
    Built,
    Identity,
    MovableClock,
    blob_url,
    new_identity,
    revoke,
)
from .storage_fixtures import S3_KEYS, S3_REGION, moto_endpoint, s3_url

__all__ = ["moto_endpoint", "s3_url"]

MIB = 1024 * 1024
CHUNK = 256 * 1024
SHARD = 3 * MIB


@pytest.fixture
def front(moto_endpoint: str) -> Iterator[S3Front]:
    with s3_front(moto_endpoint) as f:
        yield f


def presign_settings(settings: Settings, s3_url: str, front: S3Front, ttl: int) -> Settings:
    return Settings(
        data_dir=settings.data_dir,
        database_url=settings.database_url,
        storage_url=s3_url,
        s3_endpoint_url=front.url,
        s3_region=S3_REGION,
        s3_access_key_id=S3_KEYS["aws_access_key_id"],
        s3_secret_access_key=SecretStr(S3_KEYS["aws_secret_access_key"]),
        blob_delivery="presign",
        presign_ttl_seconds=ttl,
        max_blob_bytes=8 * MIB,
    )


def _publish(http: Any, owner: Identity, reader: Identity) -> Built:
    """``acme/books`` with one random 3 MiB shard in 256 KiB chunks, readable by ``reader``."""
    return publish_shards(http, owner, reader, [os.urandom(SHARD)], chunk_bytes=CHUNK)


def _audit(http: Any, owner: Identity, action: str) -> list[dict[str, Any]]:
    items = http.get("/v1/datasets/acme/books/audit", headers=owner.headers).json()["items"]
    return [e for e in items if e["action"] == action]


def test_an_authorized_get_redirects_to_a_presigned_range(
    settings: Settings, clock: MovableClock, s3_url: str, front: S3Front
) -> None:
    app = create_app(presign_settings(settings, s3_url, front, 60), clock=clock)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as http:
        owner = new_identity(http, "institution", "Acme Institute")
        reader = new_identity(http, "researcher", "Ada")
        stranger = new_identity(http, "researcher", "Eve")
        built = _publish(http, owner, reader)
        shard = built.manifest.shards[0]
        url = blob_url("acme/books", shard.sha256)
        before = clock()
        r = http.get(url, headers={**reader.headers, "Range": "bytes=10-99"})
        after = clock()
        assert r.status_code == 307
        location = r.headers["location"]
        assert location.startswith(f"{front.url}/")
        assert "X-Amz-Expires=60" in location
        assert reader.token not in location
        assert r.headers["cache-control"] == "no-store"
        got = httpx.get(location, headers={"Range": "bytes=10-99"})
        assert (got.status_code, got.content) == (206, built.blobs[shard.sha256][10:100])
        (event,) = _audit(http, owner, "read_url")
        assert event["principal"] == reader.keyid
        assert (event["version"], event["dataset"]) == (1, "acme/books")
        what, _, until = event["detail"].partition(" until ")
        assert what == f"sha256:{shard.sha256} bytes 10-99/{SHARD}"
        ttl = timedelta(seconds=60)
        assert before + ttl <= datetime.fromisoformat(until) <= after + ttl
        # Without Range: a URL for the whole blob; HEAD is answered by the registry itself.
        assert http.get(url, headers=reader.headers).status_code == 307
        assert "bytes 0-" in _audit(http, owner, "read_url")[-1]["detail"]
        assert http.head(url, headers=reader.headers).headers["content-length"] == str(SHARD)
        # No grant, or a revoked one: no URL.
        assert http.get(url, headers=stranger.headers).status_code in (403, 404)
        revoke(http, owner, "acme/books", _grant_of(http, reader))
        r = http.get(url, headers=reader.headers)
        assert r.status_code == 403
        assert "location" not in r.headers
        assert len(_audit(http, owner, "read_url")) == 2


def _grant_of(http: Any, reader: Identity) -> str:
    grants = http.get("/v1/grants", headers=reader.headers).json()["items"]
    return str(grants[0]["grant_id"])


@pytest.fixture
def live_presign(
    settings: Settings, s3_url: str, front: S3Front, request: pytest.FixtureRequest
) -> Iterator[Registry]:
    ttl = getattr(request, "param", 60)
    with serve(presign_settings(settings, s3_url, front, ttl)) as reg:
        yield reg


def _fetch(reg: Registry, reader: Identity, built: Built, tmp_path: Path, delay: float) -> bytes:
    fetcher = dataset_fetcher(reg.url, reader, buffer_bytes=64 * 1024)
    fetch_verified(fetcher, built, 0, tmp_path / "shard", slow=delay)
    fetcher.close()
    return (tmp_path / "shard").read_bytes()


def _ranges(front: S3Front) -> list[tuple[str, int]]:
    return [(r.headers.get("Range", ""), r.status) for r in front.presigned()]


def test_the_client_follows_verifies_and_keeps_its_token(
    live_presign: Registry, front: S3Front, tmp_path: Path
) -> None:
    with httpx.Client(base_url=live_presign.url, timeout=30) as http:
        owner = new_identity(http, "institution", "Acme Institute")
        reader = new_identity(http, "researcher", "Ada")
        built = _publish(http, owner, reader)
        data = _fetch(live_presign, reader, built, tmp_path, 0.0)
        assert data == built.blobs[built.manifest.shards[0].sha256]
        assert _ranges(front) == [(f"bytes=0-{SHARD - 1}", 206)]
        for seen in front.requests:  # the registry's own S3 calls and the client's GETs
            assert reader.token not in str(seen.headers)
            assert reader.token not in seen.path
        assert all("Authorization" not in r.headers for r in front.presigned())


@pytest.mark.parametrize("live_presign", [1], indirect=True)
def test_a_url_that_expires_mid_shard_is_renewed_and_no_byte_is_read_twice(
    live_presign: Registry, front: S3Front, tmp_path: Path
) -> None:
    """TTL 1 s; a slow reader; the connection drops mid-shard once the URL has expired. The
    client asks the registry again from the byte it got to: a fresh URL, the rest of the range.
    The old URL is refused by then (as S3 refuses it)."""
    with httpx.Client(base_url=live_presign.url, timeout=30) as http:
        owner = new_identity(http, "institution", "Acme Institute")
        reader = new_identity(http, "researcher", "Ada")
        built = _publish(http, owner, reader)
        cut = SHARD // 2 + 1000  # mid-chunk
        front.faults.cut_after = cut
        data = _fetch(live_presign, reader, built, tmp_path, delay=0.05)
        assert data == built.blobs[built.manifest.shards[0].sha256]
        ranges = _ranges(front)
        assert ranges == [(f"bytes=0-{SHARD - 1}", 206), (f"bytes={cut}-{SHARD - 1}", 206)]
        issued = [e["detail"] for e in _audit(http, owner, "read_url")]
        assert [d.split(" until ")[0].split(" bytes ")[1] for d in issued] == [
            f"0-{SHARD - 1}/{SHARD}",
            f"{cut}-{SHARD - 1}/{SHARD}",
        ]
        first = front.presigned()[0]
        replay = httpx.get(front.url + first.path, headers={"Range": first.headers["Range"]})
        assert (replay.status_code, b"expired" in replay.content) == (403, True)


@pytest.mark.parametrize("live_presign", [1], indirect=True)
@pytest.mark.parametrize("fault", ["late", "wrong_start"])
def test_an_expired_url_or_a_wrong_answer_is_refused_and_renewed(
    live_presign: Registry, front: S3Front, tmp_path: Path, fault: str
) -> None:
    with httpx.Client(base_url=live_presign.url, timeout=30) as http:
        owner = new_identity(http, "institution", "Acme Institute")
        reader = new_identity(http, "researcher", "Ada")
        built = _publish(http, owner, reader)
        if fault == "late":
            front.faults.late_by = 2.2  # arrives after its 1 s
        else:
            front.faults.wrong_start = True
        data = _fetch(live_presign, reader, built, tmp_path, 0.0)
        assert data == built.blobs[built.manifest.shards[0].sha256]
        first_status = 403 if fault == "late" else 206
        whole = f"bytes=0-{SHARD - 1}"
        assert _ranges(front) == [(whole, first_status), (whole, 206)]
        assert len(_audit(http, owner, "read_url")) == 2


def test_presign_needs_an_s3_store(settings: Settings) -> None:
    with pytest.raises(ValueError, match="presign"):
        Settings(
            data_dir=settings.data_dir,
            database_url=settings.database_url,
            blob_delivery="presign",
        )


def test_open_dataset_streams_verified_rows_through_presigned_urls(
    live_presign: Registry, front: S3Front, tmp_path: Path
) -> None:
    publisher = make_identity(tmp_path, live_presign.url, "acme-lab", "institution")
    researcher = make_identity(tmp_path, live_presign.url, "ada", "researcher")
    publisher.client.create_namespace("acme")
    table = sample_table(3000, text_bytes=400)
    publish_as(publisher, table, dataset="acme/books", shard_bytes=256 * 1024, chunk_bytes=65536)
    grant_dataset(publisher.client, researcher.client, "acme/books")
    with open_dataset("acme/books", client=researcher.client) as ds:
        got = pa.Table.from_batches(list(ds))
    assert got.equals(table)
    shards = {r.path.split("?")[0] for r in front.presigned()}
    assert len(shards) >= 2  # the shards and their chunk lists, each from the store
    assert all(status == 206 for _, status in _ranges(front))
    assert all("Authorization" not in r.headers for r in front.presigned())
    publisher.client.close()
    researcher.client.close()
