"""Data for the trainer tests, through the real path: tables published with the real publisher
to a real registry, then streamed (``open_dataset``) or pulled and opened offline
(``open_pulled``). The session's datasets are built once in ``conftest.py``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ostraca.client.local import PulledDataset, open_pulled
from ostraca.client.publishing import PublishResult
from ostraca.client.source import Provenance, ShardSource
from ostraca.client.stream import VerifiedDataset, open_dataset

from ..client.client_helpers import Identity
from ..registry_helpers import Registry

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "ran",
    "to",
    "park",
    "and",
    "saw",
    "bird",
    "sky",
    "blue",
    "red",
    "sun",
]

SHARD_BYTES = 64 * 1024
"""The publisher's smallest shard (one 64 KiB chunk): a ``pad`` column that no test reads makes
each shard of these small corpora hold as few documents as a trainer test wants."""

TEXT_PAD_BYTES = 380
"""With 64 KiB shards this gives 120 documents per shard."""


def corpus(n_docs: int, *, seed: int = 0) -> list[str]:
    """Short, repetitive sentences: a tiny model learns their statistics in a few steps."""
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "." for _ in range(n_docs)
    ]


def text_table(n_docs: int, *, seed: int = 0) -> pa.Table:
    """``text`` (the documents) and ``pad`` (incompressible bytes the trainer never reads)."""
    rng = random.Random(seed + 1000)
    docs = corpus(n_docs, seed=seed)
    pad = [rng.randbytes(TEXT_PAD_BYTES) for _ in docs]
    return pa.table({"text": docs, "pad": pa.array(pad, pa.binary())})


def ids_table(n_rows: int = 254) -> pa.Table:
    """Rows with a global ``id`` (0…N-1), a float ``x`` = id / 2 and a ``pad`` whose size varies
    by region, so that 64 KiB shards hold uneven numbers of rows."""
    rng = random.Random(2)
    pad = [rng.randbytes(700 + 1500 * ((i // 31) % 3)) for i in range(n_rows)]
    return pa.table(
        {
            "id": pa.array(range(n_rows), pa.int64()),
            "x": pa.array([i / 2 for i in range(n_rows)]),
            "pad": pa.array(pad, pa.binary()),
        }
    )


@dataclass(frozen=True)
class Published:
    """A dataset version on the session's registry, and the researcher's pulled copy of it."""

    dataset: str
    result: PublishResult
    copy: Path


@dataclass
class TrainerData:
    """The session's registry, its two parties and the datasets published on it."""

    registry: Registry
    publisher: Identity
    researcher: Identity
    corpus: Published
    """6 shards × 120 documents."""
    small: Published
    """150 documents (2 shards)."""
    ids: Published
    """254 rows of ``ids_table`` in uneven shards."""

    def stream(self, what: Published, **kw: object) -> VerifiedDataset:
        """Stream ``what`` from the registry as the researcher, verified."""
        return open_dataset(what.dataset, client=self.researcher.client, **kw)  # type: ignore[arg-type]

    def pulled(self, what: Published, **kw: object) -> PulledDataset:
        """Open the researcher's pulled copy of ``what``, offline, verified."""
        return open_pulled(what.copy, home=self.researcher.home, **kw)  # type: ignore[arg-type]


class RevokeAfter:
    """A real source whose grant gets revoked on the registry — by its publisher, for real —
    as soon as the consumer has begun its ``shards``-th shard. The source's own check at the
    next shard boundary then refuses the read (``RevokedError``)."""

    def __init__(self, source: ShardSource, *, shards: int, revoke: Callable[[], object]) -> None:
        self._source = source
        self._shards = shards
        self._revoke = revoke
        self._started: set[int] = set()
        self.revoked = False

    @property
    def provenance(self) -> Provenance:
        return self._source.provenance

    @property
    def shard_rows(self) -> Sequence[int]:
        return self._source.shard_rows

    @property
    def schema(self) -> pa.Schema:
        return self._source.schema

    def read_shards(
        self, order: Sequence[int], *, columns: Sequence[str] | None = None
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        for index, batch in self._source.read_shards(order, columns=columns):
            if index not in self._started:
                self._started.add(index)
                if len(self._started) == self._shards and not self.revoked:
                    self._revoke()
                    self.revoked = True
            yield index, batch


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
