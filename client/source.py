"""The contract between verified streaming and its consumers (the PyTorch adapter, the trainer).

A :class:`ShardSource` is a dataset version whose manifest and grant have been verified. It hands
out record batches shard by shard, in any order the consumer asks for; a batch is yielded only
after the bytes it came from were checked against the signed manifest.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a stream's rows come from: what a training attestation must name."""

    dataset: str
    version: int
    manifest_digest: str
    license: str
    terms_sha256: str
    grant_id: str
    publisher: str


class ShardSource(Protocol):
    """A verified dataset version, readable shard by shard."""

    @property
    def provenance(self) -> Provenance: ...

    @property
    def shard_rows(self) -> Sequence[int]:
        """Rows in each shard, in manifest order (``len(shard_rows)`` is the shard count)."""
        ...

    @property
    def schema(self) -> pa.Schema: ...

    def read_shards(
        self, order: Sequence[int], *, columns: Sequence[str] | None = None
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Yield ``(shard_index, batch)`` for the shards in ``order``, each batch verified.

        Shards are fetched ahead with bounded concurrency. Raises ``RevokedError`` (grant revoked
        since the stream opened, at the next shard), ``VerificationError`` (a shard's bytes do not
        match the manifest: no row of an unverified chunk is ever yielded — the guarantee is per
        chunk of the signed chunk list, or per shard where the source was opened with
        ``verify="shard"``) or ``AccessDeniedError``.
        """
        ...
