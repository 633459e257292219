"""A hostile publisher swaps sealed shards between manifest entries (ENCRYPTION.md): every digest
is consistent, so the registry accepts the version and each chunk verifies, but a chunk sealed
for another shard index does not open. The reader of ``open_dataset`` gets ``DecryptionError``,
no row of the swapped shard, and no hang, though chunks are now opened on the fetch thread."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable

import blake3
import pyarrow as pa
import pytest

from ostraca.client.api import RegistryClient
from ostraca.client.cache import BlobCache
from ostraca.client.encryption import identity_encryption_key, key_grant_envelope
from ostraca.client.keyflow import escrow_ring, publish_keys
from ostraca.client.publishing import PublishResult
from ostraca.client.stream import open_dataset
from ostraca.protocol_spec import DatasetManifest, sign_statement, utc_now
from ostraca.protocol_spec.crypto import DataKey, GroupContext, ShardCipher
from ostraca.protocol_spec.errors import DecryptionError
from ostraca.protocol_spec.models import DEFAULT_GROUP, GroupEncryption, ShardEntry

from .client_helpers import NAMESPACE, Identity, sample_table
from .stream_helpers import grant_access

DATASET = f"{NAMESPACE}/books"


def _upload(client: RegistryClient, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    session = client.start_upload(NAMESPACE, len(data))
    client.patch_upload(session.upload_id, 0, data)
    client.finish_upload(session.upload_id, digest)
    return digest


def _plaintext_shards(client: RegistryClient, m: DatasetManifest) -> list[bytes]:
    """Every shard of ``m`` opened with the publisher's own escrow (ENCRYPTION.md 4.5)."""
    keys = escrow_ring(
        client, m.dataset, publisher_keys={client.keyid: client.key.public}, now=utc_now()
    )
    assert m.encryption is not None
    commitment = m.encryption[DEFAULT_GROUP].key_commitment
    out = []
    for index, shard in enumerate(m.shards):
        cipher = keys.cipher(
            version=m.version,
            group=DEFAULT_GROUP,
            commitment=commitment,
            shard=index,
            chunk_bytes=m.chunk_bytes,
        )
        out.append(cipher.open(client.get_blob(shard.sha256, dataset=m.dataset)))
    return out


def _sealed_entry(
    client: RegistryClient, m: DatasetManifest, cipher: ShardCipher, plaintext: bytes, rows: int
) -> ShardEntry:
    """Seal ``plaintext`` with ``cipher``, upload it and its chunk list (over the ciphertext)."""
    sealed = cipher.seal(plaintext)
    digest = blake3.blake3 if m.chunk_algorithm == "blake3" else hashlib.sha256
    pieces = [sealed[i : i + m.chunk_bytes] for i in range(0, len(sealed), m.chunk_bytes)]
    chunks = b"".join(digest(p).digest() for p in pieces)
    return ShardEntry(
        sha256=_upload(client, sealed), bytes=len(sealed), rows=rows, chunks=_upload(client, chunks)
    )


def publish_swapped(publisher: Identity, first: PublishResult, order: list[int]) -> DatasetManifest:
    """Version 2, signed by the publisher: version 1's rows under a fresh data key, shard ``i``
    sealed for version 2 as shard index ``order[i]`` (so an ``order[i] != i`` entry holds a
    well-formed blob of another index), with its escrow stored like ``publish`` stores it."""
    client = publisher.client
    env1 = client.get_manifest_envelope(DATASET, first.version)
    m1 = DatasetManifest.from_json_obj(json.loads(env1.payload))
    plaintexts = _plaintext_shards(client, m1)
    key = DataKey.generate()
    context = GroupContext(dataset=DATASET, version=2, group=DEFAULT_GROUP)
    shards = [
        _sealed_entry(
            client,
            m1,
            ShardCipher(key, context=context, shard=sealed_as, chunk_bytes=m1.chunk_bytes),
            plaintexts[sealed_as],
            m1.shards[sealed_as].rows,
        )
        for sealed_as in order
    ]
    return publish_version_2(publisher, env1.digest, m1, shards, key)


def publish_version_2(
    publisher: Identity, previous: str, m1: DatasetManifest, shards: list[ShardEntry], key: DataKey
) -> DatasetManifest:
    """Sign and publish version 2 of ``m1``'s dataset with ``shards`` under ``key``, and store
    its escrow like ``publish`` stores it."""
    context = GroupContext(dataset=DATASET, version=2, group=DEFAULT_GROUP)
    m2 = m1.model_copy(
        update={
            "version": 2,
            "previous": previous,
            "created": utc_now(),
            "shards": shards,
            "encryption": {DEFAULT_GROUP: GroupEncryption(key_commitment=key.commitment(context))},
        }
    )
    publisher.client.publish_version(sign_statement(m2, [publisher.key]))
    escrow = key_grant_envelope(
        publisher.key,
        {2: {DEFAULT_GROUP: key}},
        dataset=DATASET,
        grantee=publisher.keyid,
        recipient=identity_encryption_key(publisher.key).public,
        grant=None,
        created=utc_now(),
    )
    publish_keys(publisher.client, escrow, {2: {DEFAULT_GROUP: key}}, dataset=DATASET)
    return m2


def _read_into(batches: Iterable[pa.RecordBatch], got: list[pa.RecordBatch]) -> None:
    """Append each batch as it is yielded, so those before an error stay in ``got``."""
    for batch in batches:
        got.append(batch)


def _publish_first(
    publisher: Identity, publish_table: Callable[..., PublishResult]
) -> tuple[pa.Table, PublishResult, int]:
    """Version 1, honest and encrypted, of at least three shards: its table, result, shards."""
    table = sample_table(5000)
    first = publish_table(table, shard_bytes=65536, chunk_bytes=65536)
    env = publisher.client.get_manifest_envelope(DATASET, first.version)
    count = len(DatasetManifest.from_json_obj(json.loads(env.payload)).shards)
    assert count >= 3
    return table, first, count


@pytest.mark.timeout(60)
def test_swapped_shards_stop_the_reader_before_any_of_their_rows(
    publisher: Identity, researcher: Identity, publish_table: Callable[..., PublishResult]
) -> None:
    table, first, count = _publish_first(publisher, publish_table)
    # Shard 0 is authentic; entries 1 and 2 hold each other's (well-sealed) blobs.
    m2 = publish_swapped(publisher, first, [0, 2, 1, *range(3, count)])
    grant_access(publisher.client, researcher.client, DATASET)
    for _ in range(2):  # and again: the cache must not have kept a swapped blob as good
        got: list[pa.RecordBatch] = []
        with open_dataset(DATASET, client=researcher.client) as ds:
            assert ds.manifest.statement.version == 2
            with pytest.raises(DecryptionError, match="shard 1 chunk 0"):
                _read_into(ds, got)
        rows = sum(b.num_rows for b in got)
        assert rows <= m2.shards[0].rows  # nothing from entry 1 or after it
        if got:
            assert pa.Table.from_batches(got).equals(table.slice(0, rows))


@pytest.mark.timeout(60)
def test_the_same_forgery_in_order_reads_back(
    publisher: Identity, researcher: Identity, publish_table: Callable[..., PublishResult]
) -> None:
    """The control: built the same way but in order, version 2 reads as version 1's rows, so
    the error above is the swap's and not the forgery's."""
    table, first, count = _publish_first(publisher, publish_table)
    publish_swapped(publisher, first, list(range(count)))
    grant_access(publisher.client, researcher.client, DATASET)
    with open_dataset(DATASET, client=researcher.client) as ds:
        assert ds.manifest.statement.version == 2
        assert ds.to_table().equals(table)


@pytest.mark.timeout(60)
def test_a_good_cached_blob_relisted_by_another_version_is_refused_and_kept(
    publisher: Identity, researcher: Identity, publish_table: Callable[..., PublishResult]
) -> None:
    """Version 2 relists version 1's blobs under a new data key. Re-checking its cache, the
    reader refuses them (DecryptionError: they verify but do not open as version 2) but keeps
    them cached: they are version 1's good copies, and a hostile manifest must not be able to
    evict what another version verified."""
    table, first, _ = _publish_first(publisher, publish_table)
    env1 = publisher.client.get_manifest_envelope(DATASET, first.version)
    m1 = DatasetManifest.from_json_obj(json.loads(env1.payload))
    grant_access(publisher.client, researcher.client, DATASET)
    with open_dataset(DATASET, client=researcher.client, version=1) as ds:
        assert ds.to_table().equals(table)  # version 1's blobs are now cached
    publish_version_2(publisher, env1.digest, m1, list(m1.shards), DataKey.generate())
    with (
        open_dataset(DATASET, client=researcher.client, recheck_cache=True) as ds,
        pytest.raises(DecryptionError, match="shard 0 chunk 0"),
    ):
        _read_into(ds, [])
    cache = BlobCache(researcher.config.cache_path)
    for shard in m1.shards:
        cached = cache.open(shard.sha256, shard.bytes)
        assert cached is not None
        cached.close()
