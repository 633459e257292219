"""Writing shards: Arrow IPC stream files of a target size, hashed while they are written.

Shard format (what the streaming reader relies on):

- Each shard is one Arrow IPC **stream** (``pa.ipc.new_stream``; schema message, record batches,
  end-of-stream marker), compressed per buffer with ``zstd``, ``lz4`` or not at all
  (``IpcWriteOptions(compression=...)``). Every shard carries the same schema, the one whose
  ``schema.serialize()`` the manifest holds in base64.
- Record batches are about :data:`TARGET_BATCH_BYTES` on disk (more rows per batch where data
  compresses well), so a reader can decode and use the first batches of a shard long before the
  whole shard has arrived.
- A shard's *chunk list* is the concatenation of the raw 32-byte digests (by the manifest's
  ``chunk_digest`` algorithm, BLAKE3 or SHA-256) of each ``chunk_bytes`` piece of the shard
  file (the last piece may be shorter). The manifest's ``ShardEntry.chunks`` is the sha256 hex
  of that chunk list; the list itself is uploaded as a blob of its own.

Both digests come from one pass: :class:`HashingSink` sits between Arrow's writer and the file.

Column groups (SPEC 2.6): with ``groups``, each shard is one such stream per group, holding the
group's columns of the same record batches (``shard-00000.arrows`` for ``default``,
``shard-00000.<group>.arrows`` for the others); a shard is cut when all its streams together
reach ``shard_bytes``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal

import pyarrow as pa

from ostraca.protocol_spec import ShardEntry
from ostraca.protocol_spec.chunks import DEFAULT_CHUNK_DIGEST, chunk_hasher
from ostraca.protocol_spec.crypto import ShardCipher
from ostraca.protocol_spec.models import DEFAULT_GROUP, GroupBlob

from .encryption import SealingSink
from .ingest import batch_bytes

Compression = Literal["zstd", "lz4", "none"]
COMPRESSIONS: tuple[Compression, ...] = ("zstd", "lz4", "none")
DEFAULT_SHARD_BYTES = 64 * 1024 * 1024
DEFAULT_CHUNK_BYTES = 2 * 1024 * 1024
TARGET_BATCH_BYTES = 2 * 1024 * 1024
"""Aim for record batches of about this many bytes in the shard file."""
MAX_BATCH_MEMORY = 16 * 1024 * 1024
"""Never build a batch larger than this in memory, however well it compresses."""
MIN_BATCH_MEMORY = 16 * 1024
WRITE_BYTES = 1024 * 1024
"""The most one ``write`` call hands the kernel. Linux 6.18 gives a write that covers an
aligned 2 MiB range (a sealed chunk, exactly) one 2 MiB page-cache folio, and on a VM with free
page reporting a fresh 2 MiB block comes back from the host slowly: 256 MB in aligned 2 MiB
writes took 0.69-0.73 s of kernel time after a few idle seconds here, in 1 MiB writes
0.11-0.15 s."""


class HashingSink:
    """A write-only file for ``pa.PythonFile`` that hashes every byte on its way to disk.

    Keeps a whole-file sha256 and a ``chunk_digest`` digest per fixed ``chunk_bytes`` piece, so
    that the shard's digest and its chunk list are ready the moment the writer closes: no second
    read.
    """

    def __init__(
        self, fh: BinaryIO, chunk_bytes: int, chunk_digest: str = DEFAULT_CHUNK_DIGEST
    ) -> None:
        self._fh = fh
        self._chunk_bytes = chunk_bytes
        self._whole = hashlib.sha256()
        self._new = chunk_hasher(chunk_digest)
        self._chunk = self._new()
        self._in_chunk = 0
        self._digests: list[bytes] = []
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        for start in range(0, n, WRITE_BYTES):
            self._fh.write(view[start : start + WRITE_BYTES])
        self._whole.update(view)
        pos = 0
        while pos < n:
            take = min(n - pos, self._chunk_bytes - self._in_chunk)
            self._chunk.update(view[pos : pos + take])
            self._in_chunk += take
            pos += take
            if self._in_chunk == self._chunk_bytes:
                self._digests.append(self._chunk.digest())
                self._chunk = self._new()
                self._in_chunk = 0
        self.size += n
        return n

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._fh.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def finish(self) -> tuple[str, bytes]:
        """``(sha256 hex of the file, chunk list)``; call once, after the writer closed."""
        digests = list(self._digests)
        if self._in_chunk:
            digests.append(self._chunk.digest())
        return self._whole.hexdigest(), b"".join(digests)


@dataclass(frozen=True, slots=True)
class ShardFile:
    """A finished shard in the staging directory and its chunk list beside it: the ``default``
    group's stream, with the other column groups' streams of the same rows in ``parts``."""

    path: Path
    chunk_list_path: Path
    sha256: str
    bytes: int
    rows: int
    chunks: str
    chunk_list_bytes: int
    group: str = DEFAULT_GROUP
    parts: tuple[ShardFile, ...] = ()

    def files(self) -> list[ShardFile]:
        """This stream and every other group's, ``default`` first."""
        return [self, *self.parts]

    def entry(self) -> ShardEntry:
        groups = [
            GroupBlob(group=p.group, sha256=p.sha256, bytes=p.bytes, chunks=p.chunks)
            for p in self.parts
        ]
        return ShardEntry(
            sha256=self.sha256,
            bytes=self.bytes,
            rows=self.rows,
            chunks=self.chunks,
            groups=groups or None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.path.name,
            "chunk_list_file": self.chunk_list_path.name,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "rows": self.rows,
            "chunks": self.chunks,
            "chunk_list_bytes": self.chunk_list_bytes,
            "group": self.group,
            "parts": [p.to_json() for p in self.parts],
        }

    @classmethod
    def from_json(cls, directory: Path, obj: dict[str, Any]) -> ShardFile:
        return cls(
            path=directory / str(obj["file"]),
            chunk_list_path=directory / str(obj["chunk_list_file"]),
            sha256=str(obj["sha256"]),
            bytes=int(obj["bytes"]),
            rows=int(obj["rows"]),
            chunks=str(obj["chunks"]),
            chunk_list_bytes=int(obj["chunk_list_bytes"]),
            group=str(obj.get("group", DEFAULT_GROUP)),
            parts=tuple(cls.from_json(directory, p) for p in obj.get("parts", [])),
        )


@dataclass(slots=True)
class _Stream:
    """One open group stream of the shard being written."""

    group: str
    columns: list[str]
    path: Path
    fh: BinaryIO
    sink: HashingSink
    writer: pa.ipc.RecordBatchStreamWriter
    sealing: SealingSink | None = None

    @property
    def written(self) -> int:
        """Bytes Arrow wrote into the stream (plaintext, when sealing)."""
        return self.sink.size if self.sealing is None else self.sealing.size


def write_options(compression: Compression) -> pa.ipc.IpcWriteOptions:
    return pa.ipc.IpcWriteOptions(compression=None if compression == "none" else compression)


class ShardWriter:
    """Re-batches incoming record batches and cuts them into shards of about ``shard_bytes``.

    ``write(batch)`` takes batches of any size (one row or a million); ``close()`` returns the
    finished shards in order. Files are named ``shard-00000.arrows`` and
    ``shard-00000.chunks`` in ``directory``. ``groups`` maps each column group other than
    ``default`` to its columns (SPEC 2.6); the rest of ``schema`` is ``default``'s. With
    ``seal``, each group's stream of each shard is sealed as it is written by
    ``seal(shard index, group)`` (ENCRYPTION.md 2): sizes, digests and chunk lists are then those
    of the sealed files. ``chunk_digest`` is the chunk lists' digest algorithm (SPEC 2.5).
    """

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        *,
        shard_bytes: int = DEFAULT_SHARD_BYTES,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        compression: Compression = "zstd",
        batch_bytes: int = TARGET_BATCH_BYTES,
        groups: dict[str, list[str]] | None = None,
        seal: Callable[[int, str], ShardCipher] | None = None,
        chunk_digest: str = DEFAULT_CHUNK_DIGEST,
    ) -> None:
        self.directory = directory
        self.chunk_digest = chunk_digest
        self.seal = seal
        self.schema = schema
        named = {c for cols in (groups or {}).values() for c in cols}
        self.groups = {DEFAULT_GROUP: [n for n in schema.names if n not in named]}
        self.groups.update(
            {g: [n for n in schema.names if n in cols] for g, cols in (groups or {}).items()}
        )
        self.shard_bytes = shard_bytes
        self.chunk_bytes = chunk_bytes
        self.options = write_options(compression)
        self.batch_bytes = max(MIN_BATCH_MEMORY, min(batch_bytes, shard_bytes // 4))
        self._ratio = 1.0  # bytes on disk per byte in memory, learnt from batches written
        self._pending: list[pa.RecordBatch] = []
        self._pending_bytes = 0
        self._shards: list[ShardFile] = []
        self._streams: list[_Stream] = []
        self._rows = 0
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def shards(self) -> list[ShardFile]:
        return list(self._shards)

    def _memory_target(self) -> int:
        return int(min(MAX_BATCH_MEMORY, max(MIN_BATCH_MEMORY, self.batch_bytes / self._ratio)))

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        row_bytes = max(1.0, batch_bytes(batch) / batch.num_rows)
        start = 0
        while start < batch.num_rows:
            room = self._memory_target() - self._pending_bytes
            take = max(1, min(batch.num_rows - start, int(room / row_bytes)))
            piece = batch.slice(start, take)
            self._pending.append(piece)
            self._pending_bytes += int(take * row_bytes)
            start += take
            if self._pending_bytes >= self._memory_target():
                self._flush_pending()

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        batch = (
            self._pending[0]
            if len(self._pending) == 1
            else pa.concat_batches(self._pending)  # one contiguous batch
        )
        self._pending, self._pending_bytes = [], 0
        if not self._streams:
            self._open_shard()
        before = self._size()
        for stream in self._streams:
            part = batch if len(self._streams) == 1 else batch.select(stream.columns)
            stream.writer.write_batch(part)
        written = self._size() - before
        size = batch_bytes(batch)
        if size:
            self._ratio = max(0.01, min(1.0, written / size))
        self._rows += batch.num_rows
        if self._size() + written > self.shard_bytes:
            self._close_shard()

    def _size(self) -> int:
        return sum(s.written for s in self._streams)

    def _stem(self, index: int, group: str) -> str:
        return f"shard-{index:05d}" + ("" if group == DEFAULT_GROUP else f".{group}")

    def _open_shard(self) -> None:
        index = len(self._shards)
        for group, columns in self.groups.items():
            path = self.directory / f"{self._stem(index, group)}.arrows"
            fh = open(path, "wb")  # noqa: SIM115 — closed in _close_shard
            sink = HashingSink(fh, self.chunk_bytes, self.chunk_digest)
            sealing = None if self.seal is None else SealingSink(sink, self.seal(index, group))
            whole = len(self.groups) == 1  # no column groups: the schema as given
            schema = self.schema if whole else pa.schema([self.schema.field(c) for c in columns])
            target = pa.PythonFile(sink if sealing is None else sealing, mode="w")
            writer = pa.ipc.new_stream(target, schema, options=self.options)
            self._streams.append(_Stream(group, columns, path, fh, sink, writer, sealing))
        self._rows = 0

    def _finish_stream(self, index: int, stream: _Stream) -> ShardFile:
        stream.writer.close()
        if stream.sealing is not None:
            stream.sealing.finish()
        sha, chunk_list = stream.sink.finish()
        stream.fh.flush()
        os.fsync(stream.fh.fileno())
        stream.fh.close()
        chunk_path = self.directory / f"{self._stem(index, stream.group)}.chunks"
        chunk_path.write_bytes(chunk_list)
        return ShardFile(
            path=stream.path,
            chunk_list_path=chunk_path,
            sha256=sha,
            bytes=stream.sink.size,
            rows=self._rows,
            chunks=hashlib.sha256(chunk_list).hexdigest(),
            chunk_list_bytes=len(chunk_list),
            group=stream.group,
        )

    def _close_shard(self) -> None:
        index = len(self._shards)
        own, *parts = [self._finish_stream(index, s) for s in self._streams]
        self._shards.append(replace(own, parts=tuple(parts)))
        self._streams, self._rows = [], 0

    def close(self) -> list[ShardFile]:
        """Write what is pending, finish the open shard, and return every shard in order."""
        self._flush_pending()
        if self._streams:
            self._close_shard()
        return self.shards

    def abort(self) -> None:
        """Close the open files without finishing them (after an error)."""
        for stream in self._streams:
            stream.fh.close()
        self._streams = []
