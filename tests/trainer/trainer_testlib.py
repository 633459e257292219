"""A test-only ShardSource: real Arrow IPC stream shards in a folder, sha256-checked on read.

It stands in for the client's registry-backed source, which needs a running registry; it keeps
the contract that matters here: a shard's rows are yielded only after its bytes match the
digest recorded when it was written, and a revoked grant surfaces at a shard boundary.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from ostraca.client.source import Provenance
from ostraca.protocol_spec import DigestMismatchError, RevokedError

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


def corpus(n_docs: int, *, seed: int = 0) -> list[str]:
    """Short, repetitive sentences: a tiny model learns their statistics in a few steps."""
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "." for _ in range(n_docs)
    ]


class DirSource:
    """Shards ``shard-XXXX.arrows`` in ``root``; ``revoke_after``: refuse shard reads after this
    many have been served (counted per process)."""

    def __init__(
        self, root: Path, *, revoke_after: int | None = None, name: str = "acme/corpus"
    ) -> None:
        self.root = root
        self.revoke_after = revoke_after
        self.served = 0
        paths = sorted(root.glob("shard-*.arrows"))
        self._paths = paths
        self._digests = [p.with_suffix(".sha256").read_text().strip() for p in paths]
        self._rows = [int(p.with_suffix(".rows").read_text()) for p in paths]
        with pa.ipc.open_stream(paths[0].read_bytes()) as r:
            self._schema = r.schema
        manifest = hashlib.sha256("".join(self._digests).encode()).hexdigest()
        self._prov = Provenance(
            dataset=name,
            version=1,
            manifest_digest=manifest,
            license="CC-BY-4.0",
            terms_sha256=hashlib.sha256(b"research only").hexdigest(),
            grant_id=hashlib.sha256(b"grant:" + manifest.encode()).hexdigest(),
            publisher=hashlib.sha256(b"publisher").hexdigest(),
        )

    @classmethod
    def write(cls, root: Path, tables: Sequence[pa.Table], *, max_chunksize: int = 64) -> None:
        root.mkdir(parents=True, exist_ok=True)
        for i, table in enumerate(tables):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as w:
                for b in table.to_batches(max_chunksize=max_chunksize):
                    w.write_batch(b)
            data = sink.getvalue().to_pybytes()
            path = root / f"shard-{i:04d}.arrows"
            path.write_bytes(data)
            path.with_suffix(".sha256").write_text(hashlib.sha256(data).hexdigest())
            path.with_suffix(".rows").write_text(str(table.num_rows))

    @property
    def provenance(self) -> Provenance:
        return self._prov

    @property
    def shard_rows(self) -> Sequence[int]:
        return self._rows

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def read_shards(
        self, order: Sequence[int], *, columns: Sequence[str] | None = None
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        for i in order:
            if self.revoke_after is not None and self.served >= self.revoke_after:
                raise RevokedError(f"grant {self._prov.grant_id[:12]}… was revoked")
            self.served += 1
            data = self._paths[i].read_bytes()
            if hashlib.sha256(data).hexdigest() != self._digests[i]:
                raise DigestMismatchError(f"shard {i} does not match its digest")
            with pa.ipc.open_stream(data) as r:
                for batch in r:
                    yield i, (batch if columns is None else batch.select(list(columns)))


def text_shards(root: Path, *, shards: int, docs_per_shard: int, seed: int = 0) -> Path:
    docs = corpus(shards * docs_per_shard, seed=seed)
    tables = [
        pa.table({"text": docs[s * docs_per_shard : (s + 1) * docs_per_shard]})
        for s in range(shards)
    ]
    DirSource.write(root, tables)
    return root


def id_shards(root: Path, rows: Sequence[int]) -> Path:
    """Shards whose rows carry a global ``id`` (0…N-1) and a float ``x`` = id / 2."""
    tables, start = [], 0
    for n in rows:
        ids = pa.array(range(start, start + n), pa.int64())
        tables.append(
            pa.table({"id": ids, "x": pa.array([i / 2 for i in range(start, start + n)])})
        )
        start += n
    DirSource.write(root, tables, max_chunksize=7)
    return root
