"""Bounded resources: body caps checked while the body is read, the manifest's shard cap,
ASCII-only numbers, malformed bodies, disconnects. Each attack runs against a real registry
over HTTP and must leave the database, the blob store and the audit log as they were."""

from __future__ import annotations

import json
import select
import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from ostraca.server.settings import Settings

from ..registry_helpers import Registry
from ..server.server_helpers import (
    Identity,
    arrow_shard,
    assert_problem,
    build_manifest,
    new_identity,
    publish,
    upload_blob,
)
from .security_helpers import serve, snapshot

MIB = 1024 * 1024


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=30)


def _answer(sock: socket.socket) -> tuple[int, dict[str, object]]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length")
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), json.loads(rest[:length])


def _stream_until_answer(
    url: str, path: str, *, chunk: int, total: int, headers: str = ""
) -> tuple[int, dict[str, object], int, bool]:
    """POST ``total`` bytes of JSON-ish filler in ``chunk``-byte chunked pieces, waiting briefly
    for an answer after each; returns (status, problem, bytes sent before the answer came,
    whether the server then closed the connection rather than read on)."""
    sock = _connect(url)
    sent = 0
    try:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        piece = f"{chunk:x}\r\n".encode() + b" " * chunk + b"\r\n"
        while sent < total:
            if select.select([sock], [], [], 0.2)[0]:
                break
            sock.sendall(piece)
            sent += chunk
        status, problem = _answer(sock)
        sock.settimeout(5)
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:  # closed with our unread bytes in its buffer
            closed = True
        except TimeoutError:
            closed = False
    finally:
        sock.close()
    return status, problem, sent, closed


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_small_statement_cap_while_reading(live: Registry) -> None:
    """An unauthenticated registration body is refused as soon as it crosses 64 KiB."""
    before = snapshot(live.settings)
    cap, chunk = live.settings.max_statement_bytes, 16 * 1024
    status, problem, sent, closed = _stream_until_answer(
        live.url, "/v1/principals", chunk=chunk, total=10 * cap
    )
    assert (status, problem["code"]) == (413, "too_large")
    assert sent <= cap + chunk
    assert closed
    assert before.changes(snapshot(live.settings)) == {}


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/auth/token", 413, "too_large"),
        ("/v1/datasets/acme/books/versions", 401, "unauthenticated"),
    ],
)
def test_400_mib_unauthenticated_body_is_not_buffered(
    live: Registry, path: str, status: int, code: str
) -> None:
    """400 MiB streamed 1 MiB at a time: answered after the first chunk (a manifest's large
    cap applies only once the caller is known), and the server's memory does not grow by the
    body (the registry runs in this process)."""
    rss = _rss_bytes()
    answer, problem, sent, _ = _stream_until_answer(live.url, path, chunk=MIB, total=400 * MIB)
    assert (answer, problem["code"]) == (status, code)
    assert sent <= 2 * MIB
    assert _rss_bytes() - rss < 50 * MIB


def test_access_request_of_500_mib_is_refused_early(live: Registry, researcher: Identity) -> None:
    before = snapshot(live.settings)
    status, problem, sent, closed = _stream_until_answer(
        live.url,
        "/v1/requests",
        chunk=MIB,
        total=500 * MIB,
        headers=f"Authorization: Bearer {researcher.token}\r\n",
    )
    assert (status, problem["code"]) == (413, "too_large")
    assert sent <= 2 * MIB
    assert closed
    assert before.changes(snapshot(live.settings)) == {}


@pytest.fixture
def small_manifests(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        storage_url=f"file://{tmp_path / 'blobs'}",
        max_envelope_bytes=64 * 1024,
        max_manifest_shards=2,
    )


def test_manifest_caps(small_manifests: Settings) -> None:
    """A manifest over the envelope cap, or listing more shards than allowed, is refused
    before any signature or blob is looked at."""
    with serve(small_manifests) as reg, httpx.Client(base_url=reg.url) as http:
        owner = new_identity(http, "institution", "Acme Institute")
        r = http.post("/v1/namespaces", json={"name": "acme"}, headers=owner.headers)
        assert r.status_code == 201, r.text
        data = [arrow_shard(10, seed=i) for i in range(3)]
        built = build_manifest(owner.key, "acme/books", data, rows_per_shard=10)
        for blob in built.blobs.values():
            upload_blob(http, owner, blob)
        before = snapshot(small_manifests)
        body = assert_problem(publish(http, owner, built), 413, "too_large")
        assert "3 shards" in body["detail"]
        assert "limit of 2" in body["detail"]
        r = http.post(
            "/v1/datasets/acme/books/versions",
            content=b"{" + b" " * (100 * 1024) + b"}",
            headers={**owner.headers, "Content-Type": "application/json"},
        )
        assert_problem(r, 413, "too_large")
        assert before.changes(snapshot(small_manifests)) == {}


def test_numbers_are_ascii_digits(
    live: Registry, http: httpx.Client, institution: Identity
) -> None:
    before = snapshot(live.settings)
    r = http.get("/v1/datasets/acme/books/versions/%C2%B2/manifest")
    assert r.status_code in {404, 422}, r.text
    headers = [(k.encode(), v.encode()) for k, v in institution.headers.items()]
    r = http.patch(
        "/v1/uploads/" + "0" * 32,
        content=b"x",
        headers=[
            *headers,
            (b"Content-Type", b"application/octet-stream"),
            (b"Upload-Offset", b"\xb2"),
        ],
    )
    assert_problem(r, 422, "malformed")
    assert before.changes(snapshot(live.settings)) == {}


def test_superscript_version_on_a_published_dataset(
    live: Registry, http: httpx.Client, granted: Identity
) -> None:
    before = snapshot(live.settings)
    for version in ("%C2%B2", "%D9%A3", "1" * 40):
        r = http.get(f"/v1/datasets/acme/books/versions/{version}/manifest")
        assert_problem(r, 422, "malformed")
    assert before.changes(snapshot(live.settings)) == {}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/principals", b'{"name": "\xff\xfe"}'),
        ("/v1/principals", b"[" * 20000 + b"]" * 20000),
        ("/v1/auth/challenge", b'{"keyid": 5}'),
        ("/v1/auth/token", b'{"keyid": [], "nonce": {}, "signature": null}'),
        ("/v1/principals", b"\xef\xbb\xbf{}"),
    ],
)
def test_malformed_bodies_are_422(
    live: Registry, http: httpx.Client, path: str, body: bytes
) -> None:
    before = snapshot(live.settings)
    r = http.post(path, content=body, headers={"Content-Type": "application/json"})
    assert_problem(r, 422, "malformed")
    assert before.changes(snapshot(live.settings)) == {}


@pytest.mark.parametrize(
    "body", [b"\xff\xfe", b"[" * 20000 + b"]" * 20000, b'{"payloadType": 1}', b"[]"]
)
def test_malformed_envelopes_are_422(
    live: Registry, http: httpx.Client, researcher: Identity, body: bytes
) -> None:
    before = snapshot(live.settings)
    r = http.post(
        "/v1/requests",
        content=body,
        headers={**researcher.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert before.changes(snapshot(live.settings)) == {}


@pytest.mark.parametrize(
    "query",
    ["offset=99999999999999999999", "limit=10&offset=9223372036854775808", "q=%00", "q=a%00b"],
)
def test_unstorable_query_values_are_422(live: Registry, http: httpx.Client, query: str) -> None:
    """Found by the fuzzer: an integer past 64 bits, a NUL in text (PostgreSQL refuses both)."""
    before = snapshot(live.settings)
    assert_problem(http.get(f"/v1/datasets?{query}"), 422, "malformed")
    assert before.changes(snapshot(live.settings)) == {}
