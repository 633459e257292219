"""Publishing overlaps its stages: shards reach the registry while later inputs are still being
read and encoded, and a failure on either side ends the publish cleanly (real registry, HTTP)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ostraca.client.publishing import publish
from ostraca.client.staging import read_ahead

from ..registry_helpers import Registry
from .client_helpers import TERMS, Identity, read_back

OPTIONS: dict[str, object] = {
    "license": "CC-BY-4.0",
    "terms": TERMS,
    "progress": False,
    "shard_bytes": 65536,
    "chunk_bytes": 65536,
    "compression": "none",
}


def _batch(i: int) -> pa.RecordBatch:
    rng = np.random.default_rng(i)
    ids = np.arange(i * 64, (i + 1) * 64, dtype=np.int64)
    payload = pa.array([rng.bytes(1024) for _ in ids], pa.binary())
    return pa.record_batch([pa.array(ids), payload], names=["id", "payload"])


def _stored(data_dir: Path) -> int:
    root = data_dir / "blobs" / "sha256"
    return sum(1 for _ in root.iterdir()) if root.is_dir() else 0


def test_shards_are_uploaded_while_later_inputs_are_still_read(
    publisher: Identity, registry_server: Registry
) -> None:
    seen_during_read: list[int] = []

    def batches() -> Iterator[pa.RecordBatch]:
        for i in range(24):  # ~1.5 shards of 64 KiB every 2 batches
            if i == 12:  # several shards written by now: the first must reach the registry
                deadline = time.monotonic() + 30
                while not _stored(registry_server.data_dir) and time.monotonic() < deadline:
                    time.sleep(0.02)
                seen_during_read.append(_stored(registry_server.data_dir))
            yield _batch(i)

    result = publish(publisher.client, batches(), dataset="acme/pipe", **OPTIONS)  # type: ignore[arg-type]
    assert seen_during_read[0] >= 1, "no blob reached the registry before the inputs ended"
    assert len(result.shards) >= 6
    assert result.blobs_uploaded == 2 * len(result.shards)
    table = read_back(publisher.client, result)
    assert table.column("id").to_pylist() == list(range(24 * 64))


def test_an_input_failing_midway_ends_the_publish_with_its_error(
    publisher: Identity, registry_server: Registry
) -> None:
    def batches() -> Iterator[pa.RecordBatch]:
        for i in range(12):
            yield _batch(i)
        raise RuntimeError("the input broke")

    with pytest.raises(RuntimeError, match="the input broke"):
        publish(publisher.client, batches(), dataset="acme/broken", **OPTIONS)  # type: ignore[arg-type]
    assert publisher.client.find_dataset("acme/broken") is None


def test_read_ahead_keeps_order_and_stops_its_thread_when_closed() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    ahead = read_ahead(items(), depth=3)
    assert [next(ahead) for _ in range(5)] == [0, 1, 2, 3, 4]
    ahead.close()
    assert len(produced) <= 5 + 3 + 2  # at most depth ahead (and one in hand) when closed
