"""Re-encrypt a dataset for fresh keys (ENCRYPTION.md 7.4), e.g. for forward secrecy after a
revocation: the latest version's rows are read back with the publisher's escrow, verified blob by
blob, and published again as the next version under new data keys. The live grants that cover
the new version receive its keys (``publish``); a revoked grantee never does.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import pyarrow as pa

from ostraca.protocol_spec import (
    DatasetManifest,
    DigestMismatchError,
    split_dataset,
    utc_now,
    verify_manifest,
)

from .api import RegistryClient
from .encryption import KeyRing
from .keyflow import escrow_ring
from .publishing import PublishResult, publish
from .verified import decode_shard, zip_groups

__all__ = ["rekey"]


def _rows(
    client: RegistryClient, m: DatasetManifest, keys: KeyRing | None
) -> Iterator[pa.RecordBatch]:
    """Every row of ``m``, shard by shard: each blob checked against its digest, then opened."""
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(m.arrow_schema)))
    groups = m.group_columns()
    for index, shard in enumerate(m.shards):
        streams = []
        for blob in shard.blobs():
            what = f"shard {index} group {blob.group} of {m.dataset}@{m.version}"
            data = client.get_blob(blob.sha256, dataset=m.dataset)
            if len(data) != blob.bytes or hashlib.sha256(data).hexdigest() != blob.sha256:
                raise DigestMismatchError(f"{what} does not match the manifest")
            record = (m.encryption or {}).get(blob.group)
            plain: bytes | bytearray = data
            if record is not None:
                assert keys is not None
                cipher = keys.cipher(
                    version=m.version,
                    group=blob.group,
                    commitment=record.key_commitment,
                    shard=index,
                    chunk_bytes=m.chunk_bytes,
                )
                plain = cipher.open_into(data)
            part = (
                schema
                if len(groups) == 1
                else pa.schema([schema.field(c) for c in groups[blob.group]])
            )
            streams.append(
                decode_shard(
                    memoryview(plain), full_schema=part, columns=None, rows=shard.rows, what=what
                )
            )
        yield from (
            streams[0] if len(streams) == 1 else zip_groups(streams, schema, what=f"shard {index}")
        )


def rekey(client: RegistryClient, dataset: str, *, progress: bool = False) -> PublishResult:
    """Publish ``dataset``'s latest rows again as its next version under fresh data keys, with
    the same licence, terms, description, chunk size and column groups."""
    ns, _ = split_dataset(dataset)
    keys = client.namespace_keys(ns)
    now = utc_now()
    env = client.get_manifest_envelope(dataset, "latest")
    m = verify_manifest(env, publisher_keys=keys, now=now, dataset=dataset).statement
    ring = escrow_ring(client, dataset, publisher_keys=keys, now=now) if m.encryption else None
    return publish(
        client,
        _rows(client, m, ring),
        dataset=dataset,
        license=m.license,
        terms=m.terms,
        description=m.description,
        chunk_bytes=m.chunk_bytes,
        column_groups={g.name: g.columns for g in m.column_groups or []},
        progress=progress,
    )
