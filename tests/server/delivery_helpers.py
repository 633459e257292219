"""What the delivery tests and bench/bench_scale.py share: a dataset of random shards readable
by one researcher, the client's verified fetch of a shard (``BlobFetcher`` into a
``ChunkVerifier``), and waiting for a server process to answer."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from ostraca.client.fetch import BlobFetcher, BlobSink, ChunkVerifier

from .server_helpers import (
    Built,
    Identity,
    build_manifest,
    chunk_list,
    grant_access,
    publish,
    request_access,
    upload_blob,
)

MIB = 1024 * 1024


def publish_shards(
    http: Any, owner: Identity, reader: Identity, shards: list[bytes], *, chunk_bytes: int
) -> Built:
    """``acme/books`` holding ``shards`` (uploaded in 8 MiB pieces), readable by ``reader``."""
    assert http.post("/v1/namespaces", json={"name": "acme"}, headers=owner.headers).is_success
    built = build_manifest(owner.key, "acme/books", shards, chunk_bytes=chunk_bytes)
    for blob in built.blobs.values():
        upload_blob(http, owner, blob, chunk=8 * MIB)
    assert publish(http, owner, built).status_code == 201
    grant_access(
        http, owner, reader, "acme/books", request=request_access(http, reader, "acme/books")
    )
    return built


def fetch_verified(
    fetcher: BlobFetcher, built: Built, index: int, path: Path, *, slow: float = 0.0
) -> int:
    """Shard ``index`` of ``built`` into ``path`` the way the client reads it: every chunk
    checked against the signed chunk list, the whole length at the end. ``slow``: a reader that
    waits that long before taking each block. Returns the bytes received."""
    shard = built.manifest.shards[index]
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, shard.bytes)
        verifier = ChunkVerifier(
            name=f"shard {index}",
            digest=shard.sha256,
            size=shard.bytes,
            chunk_bytes=built.manifest.chunk_bytes,
            chunk_list=chunk_list(built.blobs[shard.sha256], built.manifest.chunk_bytes),
            fd=fd,
        )
        sink: BlobSink = _SlowSink(verifier, slow) if slow else verifier
        fetcher.fetch(shard.sha256, size=shard.bytes, sink=sink, what=f"shard {index}")
        verifier.finish()
    finally:
        os.close(fd)
    return shard.bytes


class _SlowSink:
    """A reader that takes its time: each block waits before it is verified and written."""

    def __init__(self, verifier: ChunkVerifier, delay: float) -> None:
        self.verifier, self.delay = verifier, delay

    def write(self, data: memoryview) -> None:
        time.sleep(self.delay)
        self.verifier.write(data)


def dataset_fetcher(base: str, reader: Identity, *, buffer_bytes: int = MIB) -> BlobFetcher:
    """The client's fetcher for ``acme/books`` at ``base``, with ``reader``'s token."""
    return BlobFetcher(
        f"{base}/v1/datasets/acme/books",
        headers=lambda: {"Authorization": f"Bearer {reader.token}"},
        buffer_bytes=buffer_bytes,
    )


def wait_until_up(url: str, proc: subprocess.Popen[bytes], what: str, log: Path | None) -> None:
    """Poll ``url`` until it answers (any status), or fail with the tail of ``log``."""
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url, timeout=2)
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
                raise RuntimeError(f"{what} did not start: {tail}") from None
            time.sleep(0.05)
        else:
            return
