"""Blob stores under test: the local directory and S3 on a real S3 API server (moto's standalone
server over HTTP on a loopback port), behind one parametrized ``blob_store`` fixture.

``moto_endpoint`` starts one moto server per session; ``s3_url`` is a fresh bucket per test.
A :class:`StoreUnderTest` also tells what a backend holds where the registry never looks:
``staged()`` (upload leftovers: files, staged objects, open multipart uploads) and ``blobs()``.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from moto.server import ThreadedMotoServer

from ostraca.server.storage import BlobStorage, LocalStorage
from ostraca.server.storage_s3 import MIN_PART_SIZE, S3Storage

from .delivery_helpers import wait_until_up

STORE_BACKENDS = ["local", "s3"]
S3_KEYS = {"aws_access_key_id": "ostraca-test", "aws_secret_access_key": "ostraca-test-secret"}
S3_REGION = "us-east-1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server on a free loopback port (one per test session)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@contextmanager
def moto_process(log: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """moto's server in a process of its own (with ``env`` added to ours) on a free port:
    its URL and process, until the block ends."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(f"{url}/moto-api/", proc, "moto", log)
            yield url, proc
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def s3_admin(endpoint: str) -> Any:
    """A plain boto3 client on the test server (to make buckets and look inside them)."""
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=S3_REGION, **S3_KEYS
    )


@pytest.fixture
def s3_url(moto_endpoint: str) -> str:
    """``s3://<fresh bucket>/blobs``."""
    bucket = f"ostraca-{uuid.uuid4().hex[:20]}"
    s3_admin(moto_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/blobs"


def open_s3(endpoint: str, url: str, **kwargs: Any) -> S3Storage:
    """The registry's S3 store on the test server (5 MiB parts unless told)."""
    kwargs.setdefault("part_size", MIN_PART_SIZE)
    return S3Storage(
        url,
        endpoint_url=endpoint,
        region=S3_REGION,
        access_key_id=S3_KEYS["aws_access_key_id"],
        secret_access_key=S3_KEYS["aws_secret_access_key"],
        **kwargs,
    )


@dataclass
class StoreUnderTest:
    name: str
    storage: BlobStorage
    staged: Callable[[], list[str]]
    """What upload sessions left behind, sorted."""
    blobs: Callable[[], list[str]]
    """The hex digests stored under final names, sorted."""
    reopen: Callable[[], BlobStorage]
    """A second handle on the same store (another worker: nothing shared in memory)."""


def local_store(root: Path) -> StoreUnderTest:
    storage = LocalStorage(root)
    return StoreUnderTest(
        name="local",
        storage=storage,
        staged=lambda: sorted(os.listdir(root / "uploads")),
        blobs=lambda: sorted(os.listdir(root / "sha256")),
        reopen=lambda: LocalStorage(root),
    )


def s3_store(endpoint: str, url: str) -> StoreUnderTest:
    storage = open_s3(endpoint, url)
    admin = s3_admin(endpoint)

    def keys(under: str) -> list[str]:
        listed = admin.list_objects_v2(Bucket=storage.bucket, Prefix=storage.prefix + under)
        return sorted(
            o["Key"].removeprefix(storage.prefix + under) for o in listed.get("Contents", [])
        )

    def staged() -> list[str]:
        multipart = admin.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])
        return sorted(keys("uploads/") + [f"multipart:{u['Key']}" for u in multipart])

    return StoreUnderTest(
        name="s3",
        storage=storage,
        staged=staged,
        blobs=lambda: keys("sha256/"),
        reopen=lambda: open_s3(endpoint, url),
    )


@pytest.fixture(params=STORE_BACKENDS)
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreUnderTest:
    """Each blob store in turn, empty."""
    if request.param == "local":
        return local_store(tmp_path / "blobs")
    return s3_store(request.getfixturevalue("moto_endpoint"), request.getfixturevalue("s3_url"))
