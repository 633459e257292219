"""A registry that tries to exhaust or hang the client: endless, slow, oversized, truncated and
wrong-length answers for manifests, JSON and blobs (``hostile_server.py``, a real HTTP server).
The client refuses each with a typed error, within bounds of time and memory, and resumes a
truncated or stalled blob with ``Range`` from where it stopped."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ostraca.client.api import RegistryClient
from ostraca.client.config import ReadLimits, load_config
from ostraca.client.fetch import BlobFetcher, ChunkVerifier
from ostraca.client.publishing import PublishResult
from ostraca.client.stream import open_dataset
from ostraca.client.wire import Wire, parse
from ostraca.protocol_spec import MalformedError
from ostraca.protocol_spec.errors import UnavailableError
from ostraca.protocol_spec.wire import DatasetList

from .client_helpers import Identity, sample_table
from .hostile_server import Answer, Hostile, hostile_registry
from .stream_helpers import grant_access

MIB = 1024**2
GIB = 1024**3
LIMITS = ReadLimits(
    max_manifest_bytes=4 * MIB,
    max_response_bytes=MIB,
    request_deadline_s=2.0,
    fetch_deadline_s=4.0,
    min_rate_bytes_s=256 * 1024,
    stall_window_s=0.5,
)
MANIFEST = "/v1/datasets/acme/books/versions/1/manifest"
DATASETS = "/v1/datasets"
CHUNK = 64 * 1024
BLOB = os.urandom(16 * CHUNK + 123)
DIGEST = hashlib.sha256(BLOB).hexdigest()
DATASET_PATH = "/v1/datasets/acme/books"
BLOB_PATH = f"{DATASET_PATH}/blobs/sha256:{DIGEST}"


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    with hostile_registry() as server:
        yield server


@pytest.fixture
def wire(hostile: Hostile) -> Iterator[Wire]:
    w = Wire(hostile.url, limits=LIMITS)
    yield w
    w.close()


# manifests and JSON


def test_endless_manifest_is_refused_at_its_cap_in_bounded_memory(
    hostile: Hostile, wire: Wire
) -> None:
    hostile.routes[MANIFEST] = Answer(b'{"payload":"', mode="endless")
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(MalformedError, match="max_manifest_bytes=4194304"):
            wire.send("GET", MANIFEST)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - start < 5
    assert peak < 3 * LIMITS.max_manifest_bytes  # the cap, one piece, the error: not 1 GiB


RSS_PROBE = """
import sys
from pathlib import Path
from ostraca.client.config import ReadLimits
from ostraca.client.wire import Wire
from ostraca.protocol_spec import MalformedError

def peak_kib():  # VmHWM: this process's peak RSS (ru_maxrss would count the parent's too)
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])

wire = Wire(sys.argv[1], limits=ReadLimits(max_manifest_bytes=int(sys.argv[3])))
before = peak_kib()
try:
    wire.send("GET", sys.argv[2])
except MalformedError:
    print(before, peak_kib())
"""


@pytest.mark.parametrize("cap", [4 * MIB, 64 * MIB])
def test_peak_rss_stays_bounded_reading_an_endless_manifest(hostile: Hostile, cap: int) -> None:
    hostile.routes[MANIFEST] = Answer(b'{"payload":"', mode="endless")
    proc = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, hostile.url, MANIFEST, str(cap)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    before_kib, after_kib = map(int, proc.stdout.split())
    grown = (after_kib - before_kib) * 1024
    assert grown < cap + 16 * MIB, proc.stdout  # the cap and a few pieces, not the 1 GiB


def test_a_manifest_declared_too_large_is_refused_before_its_body(
    hostile: Hostile, wire: Wire
) -> None:
    hostile.routes[MANIFEST] = Answer(b"{}", mode="endless", length=GIB)
    with pytest.raises(MalformedError, match=f"declares {GIB}"):
        wire.send("GET", MANIFEST)


def test_endless_json_is_refused_at_max_response_bytes(hostile: Hostile, wire: Wire) -> None:
    hostile.routes[DATASETS] = Answer(b"[", mode="endless")
    with pytest.raises(MalformedError, match="max_response_bytes"):
        wire.send("GET", DATASETS)


@pytest.mark.parametrize("slow_headers", [False, True], ids=["slow body", "slow headers"])
def test_a_trickling_answer_fails_within_the_deadline(
    hostile: Hostile, wire: Wire, slow_headers: bool
) -> None:
    body = b'{"items": [], "total": 0}'
    hostile.routes[DATASETS] = Answer(body, mode="trickle", interval=0.3, slow_headers=slow_headers)
    start = time.monotonic()
    with pytest.raises(UnavailableError, match="request_deadline_s=2") as info:
        wire.send("GET", DATASETS)
    took = time.monotonic() - start
    assert LIMITS.request_deadline_s - 0.5 < took < LIMITS.request_deadline_s + 1
    assert DATASETS in info.value.message


def test_truncated_json_is_unavailable(hostile: Hostile, wire: Wire) -> None:
    hostile.routes[DATASETS] = Answer(b'{"items": [], "total": 0}', mode="cut", cut=9)
    with pytest.raises(UnavailableError):
        wire.send("GET", DATASETS)


def test_wrong_length_json(hostile: Hostile, wire: Wire) -> None:
    body = b'{"items": [], "total": 0}'
    hostile.routes[DATASETS] = Answer(body, length=len(body) + 10)  # waits for bytes never sent
    start = time.monotonic()
    with pytest.raises(UnavailableError, match="request_deadline_s"):
        wire.send("GET", DATASETS)
    assert time.monotonic() - start < LIMITS.request_deadline_s + 1
    hostile.routes[DATASETS] = Answer(body, length=10)  # cut short by its own length
    with pytest.raises(MalformedError, match="not a valid DatasetList"):
        parse(wire.send("GET", DATASETS), DatasetList)


# blobs


def _fetch(hostile: Hostile, tmp_path: Path, *, retries: int = 5) -> float:
    """Fetch the blob through a chunk verifier into a file; return the seconds it took."""
    chunks = b"".join(
        hashlib.sha256(BLOB[i : i + CHUNK]).digest() for i in range(0, len(BLOB), CHUNK)
    )
    path = tmp_path / "blob"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fetcher = BlobFetcher(hostile.url + DATASET_PATH, headers=dict, limits=LIMITS, retries=retries)
    start = time.monotonic()
    try:
        os.ftruncate(fd, len(BLOB))
        verifier = ChunkVerifier(
            name="shard 0", digest=DIGEST, size=len(BLOB), chunk_bytes=CHUNK,
            chunk_list=chunks, fd=fd,
        )  # fmt: skip
        fetcher.fetch(DIGEST, size=len(BLOB), sink=verifier, what="shard 0")
        verifier.finish()
    finally:
        os.close(fd)
        fetcher.close()
    assert path.read_bytes() == BLOB
    return time.monotonic() - start


@pytest.mark.parametrize(
    ("first", "resumed_at"),
    [
        pytest.param(Answer(mode="cut", cut=5 * CHUNK + 7), 5 * CHUNK + 7, id="truncated"),
        pytest.param(Answer(length=3 * CHUNK), 3 * CHUNK, id="short Content-Length"),
        pytest.param(Answer(mode="trickle", cut=2 * CHUNK, interval=0.2), 2 * CHUNK, id="stalled"),
    ],
)
def test_a_short_or_stalled_blob_is_resumed_with_range(
    hostile: Hostile, tmp_path: Path, first: Answer, resumed_at: int
) -> None:
    log = hostile.blob(DIGEST, BLOB, first)
    assert _fetch(hostile, tmp_path) < LIMITS.fetch_deadline_s
    assert log.ranges[0] is None
    assert len(log.ranges) == 2
    start = int(str(log.ranges[1]).removeprefix("bytes=").split("-")[0])
    assert resumed_at <= start < resumed_at + 10  # the stalled one trickled a few bytes more
    # No byte was asked for twice (a trickled byte may still have been on its way).
    assert len(BLOB) <= log.sent <= len(BLOB) + 1


def test_an_oversized_blob_answer_is_read_only_to_the_promised_length(
    hostile: Hostile, tmp_path: Path
) -> None:
    hostile.blob(DIGEST, BLOB, Answer(length=GIB))
    assert _fetch(hostile, tmp_path) < 2


def test_a_blob_that_stays_stalled_fails_naming_its_url(hostile: Hostile, tmp_path: Path) -> None:
    hostile.blob(DIGEST, BLOB, Answer(mode="trickle", cut=CHUNK, interval=0.2), times=99)
    start = time.monotonic()
    with pytest.raises(UnavailableError, match="failed after 1 retries") as info:
        _fetch(hostile, tmp_path, retries=1)
    assert f"{hostile.url}{BLOB_PATH}" in info.value.message
    assert "stalled" in info.value.message
    assert time.monotonic() - start < 3 * LIMITS.stall_window_s + 2


@pytest.mark.parametrize("slow_headers", [False, True], ids=["slow body", "slow headers"])
def test_a_blob_past_its_deadline_fails_naming_its_url(
    hostile: Hostile, tmp_path: Path, slow_headers: bool
) -> None:
    # Fast enough never to look stalled, too slow to finish: the deadline ends it.
    first = Answer(
        mode="trickle", interval=0.3 if slow_headers else 0.001, slow_headers=slow_headers
    )
    hostile.blob(DIGEST, BLOB, first, times=99)
    slow = dataclasses.replace(LIMITS, min_rate_bytes_s=1, stall_window_s=60.0)
    fetcher = BlobFetcher(hostile.url + DATASET_PATH, headers=dict, limits=slow)
    start = time.monotonic()
    with pytest.raises(UnavailableError, match="fetch_deadline_s=4") as info:
        fetcher.fetch(DIGEST, size=len(BLOB), sink=_Null(), what="shard 0")
    fetcher.close()
    assert f"{hostile.url}{BLOB_PATH}" in info.value.message
    assert time.monotonic() - start < LIMITS.fetch_deadline_s + 1


class _Null:
    def write(self, data: memoryview) -> None:
        pass


# the whole client, in front of a real registry


def test_a_manifest_declared_too_large_is_refused_by_the_client(
    researcher: Identity, registry: str
) -> None:
    with hostile_registry(upstream=registry) as hostile:
        hostile.routes["/v1/datasets/acme/books/versions/latest/manifest"] = Answer(
            b"{}", mode="endless", length=GIB
        )
        config = load_config(home=researcher.home, registry=hostile.url)
        with RegistryClient(config, key=researcher.key) as client:
            start = time.monotonic()
            with pytest.raises(MalformedError, match="max_manifest_bytes"):
                client.get_manifest_bytes("acme/books")
            assert time.monotonic() - start < 2


def test_streaming_resumes_a_shard_the_registry_cut_short(
    publish_table: Callable[..., PublishResult], publisher: Identity, researcher: Identity
) -> None:
    table = sample_table()
    result = publish_table(table, chunk_bytes=CHUNK, compression="none")
    grant_access(publisher.client, researcher.client, "acme/books")
    shard = result.shards[0]
    data = researcher.client.get_blob(shard.sha256, dataset="acme/books")
    cut = len(data) // 2 + 3  # mid-chunk
    with hostile_registry(upstream=researcher.config.registry) as hostile:
        log = hostile.blob(shard.sha256, data, Answer(mode="cut", cut=cut))
        config = load_config(home=researcher.home, registry=hostile.url)
        with (
            RegistryClient(config, key=researcher.key) as client,
            open_dataset("acme/books", client=client) as ds,
        ):
            got = ds.to_table()
    assert got.equals(table)
    fetches = [r for r in log.ranges if r != "bytes=0-0"]  # not the access probes
    assert fetches == [None, f"bytes={cut}-{len(data) - 1}"]  # resumed where it stopped
