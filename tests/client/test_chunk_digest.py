"""``chunk_digest`` end to end over real HTTP (SPEC 2.5): a publish chooses BLAKE3 (default) or
SHA-256 chunk lists; every reader (stream, pull, a pulled copy's re-check, the cache re-check)
verifies with the algorithm the signed manifest names; a changed byte is refused under both; a
manifest naming the other algorithm than its chunk lists' is refused; an unknown algorithm is
refused by the registry (which hashes no chunks) and by the client, naming it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ostraca.client import open_dataset
from ostraca.client.local import open_pulled
from ostraca.client.publishing import PublishResult
from ostraca.client.pull import pull, verify_copy
from ostraca.protocol_spec import (
    DatasetManifest,
    DigestMismatchError,
    MalformedError,
    sign_envelope,
    sign_statement,
)
from ostraca.protocol_spec.chunks import compute_chunk_list
from ostraca.protocol_spec.wire import PublishOut

from .stream_helpers import IdentityLike as Identity
from .stream_helpers import RegistryLike as Registry
from .stream_helpers import blob_file, flip_byte, grant_access

DATASET = "acme/digests"
CHUNK = 64 * 1024
ALGORITHMS = ["blake3", "sha256"]
SHAPE: dict[str, Any] = {"shard_bytes": 4 * CHUNK, "chunk_bytes": CHUNK, "compression": "none"}


def _table(rows: int = 3000) -> pa.Table:
    ids = list(range(rows))
    text = [hashlib.sha256(str(i).encode()).hexdigest() * 2 for i in ids]
    return pa.table({"id": pa.array(ids, pa.int64()), "text": text})


def _publish(publish_table: Callable[..., PublishResult], algorithm: str, **kw: Any) -> Any:
    table = _table()
    result = publish_table(table, dataset=DATASET, chunk_digest=algorithm, **SHAPE, **kw)
    assert len(result.shards) >= 2
    return table, result


def _manifest(researcher: Identity, version: int | None = None) -> DatasetManifest:
    env = researcher.client.get_manifest_envelope(DATASET, version or "latest")
    return DatasetManifest.from_json_obj(json.loads(env.payload))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("where", ["first", "boundary", "last"])
def test_a_changed_byte_is_refused_under_either_algorithm(
    publish_table: Callable[..., PublishResult],
    publisher: Identity,
    researcher: Identity,
    registry_server: Registry,
    algorithm: str,
    where: str,
) -> None:
    table, result = _publish(publish_table, algorithm)
    grant_access(publisher.client, researcher.client, DATASET)
    m = _manifest(researcher)
    assert m.chunk_algorithm == algorithm
    # sha256 is the absent field: such a manifest is what readers before blake3 verify.
    assert ('"chunk_digest"' in m.to_payload().decode()) == (algorithm == "blake3")
    victim = 1
    entry = result.shards[victim]
    path = blob_file(registry_server.data_dir, entry.sha256)
    # The registry holds the chunk list the publisher computed with that algorithm.
    listed = blob_file(registry_server.data_dir, entry.chunks).read_bytes()
    assert listed == compute_chunk_list(path.read_bytes(), CHUNK, algorithm)
    offset = {"first": 0, "boundary": CHUNK, "last": entry.bytes - 1}[where]
    flip_byte(path, offset)
    got: list[tuple[int, pa.RecordBatch]] = []
    with (
        open_dataset(DATASET, client=researcher.client) as ds,
        pytest.raises(DigestMismatchError, match=f"shard {victim}.*chunk {offset // CHUNK} "),
    ):
        got.extend(ds.read_shards(range(len(result.shards))))
    rows = pa.Table.from_batches([b for _, b in got], schema=table.schema)
    assert rows.equals(table.slice(0, rows.num_rows))  # only verified rows came out


def test_pull_copy_check_and_cache_recheck_use_the_manifests_algorithm(
    publish_table: Callable[..., PublishResult],
    publisher: Identity,
    researcher: Identity,
    tmp_path: Path,
) -> None:
    table, result = _publish(publish_table, "blake3")
    grant_access(publisher.client, researcher.client, DATASET)
    dest = tmp_path / "copy"
    pull(DATASET, dest, client=researcher.client)  # downloads through the verifier: cache empty
    assert verify_copy(dest, home=researcher.home).ok
    with open_pulled(dest, home=researcher.home) as local:
        assert local.to_table().equals(table)
    flip_byte(dest / "shards" / result.shards[0].sha256, CHUNK + 5)
    report = verify_copy(dest, home=researcher.home)
    assert not report.ok
    assert "chunk 1 " in " ".join(str(c.detail) for c in report.failures)
    with (
        open_pulled(dest, home=researcher.home) as local,
        pytest.raises(DigestMismatchError, match="chunk 1 "),
    ):
        local.to_table()

    with open_dataset(DATASET, client=researcher.client) as ds:  # fills the cache, verified
        assert ds.to_table().equals(table)
    with open_dataset(DATASET, client=researcher.client, recheck_cache=True) as ds:
        assert ds.to_table().equals(table)  # BLAKE3 re-check of every cached chunk passes
        cached = ds.cache.blob_path(result.shards[1].sha256)
    flip_byte(cached, 2 * CHUNK)
    with (
        open_dataset(DATASET, client=researcher.client, recheck_cache=True) as ds,
        pytest.raises(DigestMismatchError, match="chunk 2 "),
    ):
        ds.to_table()


@pytest.mark.parametrize(("published", "claimed"), [("blake3", None), ("sha256", "blake3")])
def test_a_manifest_naming_the_wrong_algorithm_is_refused(
    publish_table: Callable[..., PublishResult],
    publisher: Identity,
    researcher: Identity,
    published: str,
    claimed: str | None,
) -> None:
    """The publisher's own key signs version 2 over the same blobs and chunk lists, naming the
    other algorithm: the registry accepts it (it checks chunk-list sizes, 32 bytes per digest
    either way, never hashes), and the reader refuses the first chunk."""
    _publish(publish_table, published, encrypt=False)
    v1 = researcher.client.get_manifest_envelope(DATASET, 1)
    obj = {**json.loads(v1.payload), "version": 2, "previous": v1.digest}
    obj.pop("chunk_digest", None)
    lie = DatasetManifest.from_json_obj({**obj, "chunk_digest": claimed})
    publisher.client.publish_version(sign_statement(lie, [publisher.key]))
    grant_access(publisher.client, researcher.client, DATASET)
    with (
        open_dataset(DATASET, version=2, client=researcher.client) as ds,
        pytest.raises(DigestMismatchError, match=r"shard 0.*chunk 0 "),
    ):
        ds.to_table()
    with open_dataset(DATASET, version=1, client=researcher.client) as ds:
        assert ds.to_table().num_rows == _table().num_rows  # the honest version still reads


def test_an_unknown_algorithm_is_refused_by_the_registry_and_the_client(
    publish_table: Callable[..., PublishResult], publisher: Identity, researcher: Identity
) -> None:
    _publish(publish_table, "blake3", encrypt=False)
    v1 = researcher.client.get_manifest_envelope(DATASET, 1)
    obj = {**json.loads(v1.payload), "version": 2, "previous": v1.digest}
    obj["chunk_digest"] = "sha3-256"
    payload = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    env = sign_envelope(DatasetManifest.PAYLOAD_TYPE, payload, [publisher.key])
    with pytest.raises(MalformedError, match="'sha3-256'"):  # over HTTP: the registry's 422
        publisher.client._post_envelope(f"/v1/datasets/{DATASET}/versions", env, PublishOut)
    with pytest.raises(MalformedError, match="chunk_digest 'sha3-256'"):
        publisher.client.publish_version(env)  # the client checks before it sends
    assert _manifest(researcher).version == 1
    with pytest.raises(MalformedError, match="'sha3-256'"):
        publish_table(_table(), dataset=DATASET, chunk_digest="sha3-256")
