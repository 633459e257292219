"""Large blob reads over real HTTP: on local files under uvicorn they leave through
``os.sendfile`` (the ``zerocopysend`` extension of ``server/zerocopy.py``), on S3 and through the
test client in blocks; either way every byte is authorized, ranges are exact, a revocation
stops the body at the next re-check, and a client gone mid-body is a 499, not an error."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ostraca.server.delivery import RECHECK_BYTES
from ostraca.server.settings import Settings

from ..registry_helpers import serve_app
from .server_helpers import (
    Identity,
    assert_problem,
    blob_url,
    build_manifest,
    grant_access,
    new_identity,
    publish,
    request_access,
    revoke,
    upload_blob,
)

MIB = 1024 * 1024
SIZE = 2 * RECHECK_BYTES + 3 * MIB + 12_345
"""Three re-check segments, the last one short and odd."""


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """The usual test settings, with room for blobs past several re-checks."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        storage_url=f"file://{tmp_path / 'blobs'}",
        max_blob_bytes=64 * MIB,
    )


@dataclass
class Large:
    http: httpx.Client
    owner: Identity
    reader: Identity
    data: bytes
    digest: str
    grant_id: str

    @property
    def url(self) -> str:
        return blob_url("acme/big", self.digest)


def _publish(http: httpx.Client, owner: Identity, dataset: str, data: bytes) -> str:
    namespace = dataset.partition("/")[0]
    r = http.post("/v1/namespaces", json={"name": namespace}, headers=owner.headers)
    assert r.status_code == 201, r.text
    built = build_manifest(owner.key, dataset, [data], chunk_bytes=2 * MIB)
    for blob in built.blobs.values():
        upload_blob(http, owner, blob, namespace=namespace, chunk=16 * MIB)
    assert publish(http, owner, built).status_code == 201
    return built.manifest.shards[0].sha256


@pytest.fixture
def large(app: FastAPI) -> Iterator[Large]:
    """``acme/big`` (one blob of :data:`SIZE` bytes) on a registry under uvicorn, a reader
    granted it."""
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        owner = new_identity(http, "institution", "Acme Institute")
        reader = new_identity(http, "researcher", "Ada Reader")
        data = os.urandom(SIZE)
        digest = _publish(http, owner, "acme/big", data)
        request = request_access(http, reader, "acme/big")
        grant_id = grant_access(http, owner, reader, "acme/big", request=request)
        yield Large(http, owner, reader, data, digest, grant_id)


def _metric(http: httpx.Client, name: str) -> float:
    text = http.get("/metrics").text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _get(large: Large, who: Identity, **headers: str) -> httpx.Response:
    return large.http.get(large.url, headers={**who.headers, **headers})


def test_large_reads_are_exact_whoever_sends_the_bytes(
    large: Large, app: FastAPI, store: str
) -> None:
    data = large.data
    r = _get(large, large.reader)
    assert r.status_code == 200
    assert r.headers["content-length"] == str(SIZE)
    assert r.content == data
    cases = {
        f"bytes=1000-{SIZE - 5000}": (1000, SIZE - 5000),
        f"bytes={RECHECK_BYTES - 1}-": (RECHECK_BYTES - 1, SIZE - 1),
        "bytes=-3000000": (SIZE - 3_000_000, SIZE - 1),
        f"bytes=5-{10 * SIZE}": (5, SIZE - 1),  # an end past the blob is clamped
    }
    for header, (start, end) in cases.items():  # the same keep-alive connection throughout
        r = _get(large, large.reader, Range=header)
        assert r.status_code == 206, header
        assert r.headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
        assert r.content == data[start : end + 1], header
    assert _get(large, large.owner).content == data  # the owner, through the namespace link
    zerocopy = _metric(large.http, "ostraca_blob_bytes_zerocopy_total")
    served = _metric(large.http, "ostraca_blob_bytes_served_total")
    assert served == 2 * SIZE + sum(end - start + 1 for start, end in cases.values())
    assert zerocopy == (served if store == "local" else 0)
    with TestClient(app) as client:  # no zerocopysend there: the same bytes, read in blocks
        blocks = client.get(large.url, headers={**large.reader.headers, "Range": "bytes=7-"})
        assert blocks.content == data[7:]
    assert _metric(large.http, "ostraca_blob_bytes_zerocopy_total") == zerocopy


def test_concurrent_large_reads(large: Large) -> None:
    got: list[bytes] = []

    def read(start: int) -> None:
        with httpx.Client(base_url=str(large.http.base_url), timeout=60) as own:
            headers = {**large.reader.headers, "Range": f"bytes={start}-"}
            got.append(own.get(large.url, headers=headers).content)

    threads = [threading.Thread(target=read, args=(i * MIB,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got, key=len, reverse=True) == [large.data[i * MIB :] for i in range(4)]


def test_hostile_ranges_and_refusals_send_no_byte(large: Large) -> None:
    r = _get(large, large.reader, Range=f"bytes={SIZE}-")
    assert_problem(r, 416, "range_not_satisfiable")
    assert r.headers["content-range"] == f"bytes */{SIZE}"
    for header in (f"bytes={SIZE + 1}-{SIZE + 9}", "bytes=9-3", "bytes=0-1,5-9", "bytes=-0"):
        assert_problem(_get(large, large.reader, Range=header), 416, "range_not_satisfiable")
    stranger = new_identity(large.http, "researcher", "Sam Stranger")
    assert_problem(_get(large, stranger), 403, "access_denied")
    # A blob of another namespace, even one the reader is granted, is not read through acme/big.
    other = new_identity(large.http, "institution", "Globex Labs")
    theirs = _publish(large.http, other, "globex/big", os.urandom(RECHECK_BYTES + 1))
    grant_access(large.http, other, large.reader, "globex/big")
    assert large.http.get(blob_url("globex/big", theirs), headers=large.reader.headers).is_success
    r = large.http.get(blob_url("acme/big", theirs), headers=large.reader.headers)
    assert_problem(r, 404, "not_found")
    revoke(large.http, large.owner, "acme/big", large.grant_id)
    assert_problem(_get(large, large.reader, Range="bytes=0-"), 403, "revoked")


def _raw_get(large: Large, receive_buffer: int) -> socket.socket:
    """A GET of the whole blob on a raw socket with a small receive buffer (the server can run
    ahead of the reader by little more than its own send buffer); returns it past the head."""
    url = httpx.URL(str(large.http.base_url))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((url.host, url.port or 80))
    request = (
        f"GET {large.url} HTTP/1.1\r\nHost: {url.host}\r\n"
        f"Authorization: {large.reader.headers['Authorization']}\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 200 "), head
    return sock


def _read(sock: socket.socket, limit: int) -> int:
    """Bytes read until ``limit`` or the end of the stream."""
    got, buf = 0, bytearray(MIB)
    while got < limit and (n := sock.recv_into(buf, min(MIB, limit - got))):
        got += n
    return got


def test_revocation_stops_the_body_at_the_next_recheck(large: Large, store: str) -> None:
    with _raw_get(large, 64 * 1024) as sock:
        first = _read(sock, MIB)
        revoke(large.http, large.owner, "acme/big", large.grant_id)
        got = first + _read(sock, SIZE)
    # sendfile runs ahead of the reader by the socket's buffers only: the re-check at 8 MiB
    # comes after the revocation. In blocks, the transport's buffer holds one more block, so
    # that first re-check may come before it, and the next one stops the body.
    assert got == RECHECK_BYTES if store == "local" else got in {RECHECK_BYTES, 2 * RECHECK_BYTES}


def test_a_client_gone_mid_body_is_a_499(large: Large) -> None:
    with _raw_get(large, 64 * 1024) as sock:
        assert _read(sock, MIB) == MIB
    route = "/v1/datasets/{ns}/{name}/blobs/{digest}"
    name = f'ostraca_http_requests_total{{method="GET",route="{route}",status="499"}}'
    deadline = time.monotonic() + 20
    while _metric(large.http, name) != 1:
        assert time.monotonic() < deadline, "the cut-off read was not counted as a 499"
        time.sleep(0.1)
    assert _get(large, large.reader).content == large.data  # the registry serves on
