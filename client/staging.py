"""The resumable part of a publish: the staging directory of one set of inputs.

``$OSTRACA_HOME/staging/<ns>/<name>/<fingerprint>/`` is keyed by the input files (path, size,
mtime) and the encoding options (:func:`fingerprint_of`). Its :class:`Plan` records the shards
:func:`encode` wrote, their digests and the signed manifest, so an interrupted publish re-run
with the same inputs neither re-encodes nor re-uploads; :class:`UploadSessions` remembers the
registry's open upload sessions, so a cut-off upload continues from the registry's offset.

Both cores work: :func:`encode` decodes the inputs on a thread of its own (:func:`read_ahead`,
a few batches ahead; Arrow releases the GIL while it decodes) while the caller's thread encodes,
compresses, seals and hashes; each shard is handed to ``on_shard`` the moment it is written, and
:class:`Uploader` sends it on a third thread (the registry hashes it meanwhile) while the next
shard is being encoded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import threading
import uuid
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.progress import Progress

from ostraca.protocol_spec import MalformedError, NotFoundError
from ostraca.protocol_spec.chunks import DEFAULT_CHUNK_DIGEST
from ostraca.protocol_spec.crypto import ShardCipher
from ostraca.protocol_spec.errors import RangeNotSatisfiableError

from .api import RegistryClient
from .files import atomic_write
from .ingest import Input, batch_bytes, conform, wrap_arrow_errors
from .shards import Compression, ShardFile, ShardWriter

__all__ = [
    "PLAN_VERSION",
    "READ_AHEAD",
    "Plan",
    "UploadSessions",
    "Uploader",
    "encode",
    "fingerprint_of",
    "open_plan",
    "read_ahead",
    "upload_blob",
]

READ_AHEAD = 4
"""Input batches decoded ahead of the encoder (each a few MiB)."""

PLAN_VERSION = 1


@dataclass
class Plan:
    directory: Path
    fingerprint: str
    schema_b64: str = ""
    columns: list[dict[str, str]] = field(default_factory=list)
    shards: list[ShardFile] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    published: dict[str, Any] | None = None
    escrow: dict[str, Any] | None = None
    """The publisher's escrow key grant (ENCRYPTION.md 4.5) of the data keys the staged shards
    are sealed under; ``None``: plaintext shards."""
    ephemeral: bool = False
    """In-memory inputs: the directory is used once and removed afterwards."""

    @property
    def path(self) -> Path:
        return self.directory / "plan.json"

    @property
    def encoded(self) -> bool:
        return bool(self.shards) and all(
            f.path.is_file()
            and f.path.stat().st_size == f.bytes
            and f.chunk_list_path.is_file()
            and f.chunk_list_path.stat().st_size == f.chunk_list_bytes
            for s in self.shards
            for f in s.files()
        )

    def save(self) -> None:
        obj = {
            "plan_version": PLAN_VERSION,
            "fingerprint": self.fingerprint,
            "schema_b64": self.schema_b64,
            "columns": self.columns,
            "shards": [s.to_json() for s in self.shards],
            "manifest": self.manifest,
            "published": self.published,
            "escrow": self.escrow,
        }
        _atomic_write_json(self.path, obj)

    def mark_published(self, *, version: int, digest: str) -> None:
        """Record that the registry has the version; the staged shard files are then removed."""
        self.published = {"version": version, "digest": digest}
        self.save()
        for f in (f for s in self.shards for f in s.files()):
            f.path.unlink(missing_ok=True)
            f.chunk_list_path.unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: Path, fingerprint: str) -> Plan:
        plan = cls(directory=directory, fingerprint=fingerprint)
        try:
            obj = json.loads(plan.path.read_text())
            if obj.get("plan_version") != PLAN_VERSION or obj.get("fingerprint") != fingerprint:
                return plan
            plan.schema_b64 = str(obj["schema_b64"])
            plan.columns = list(obj["columns"])
            plan.shards = [ShardFile.from_json(directory, s) for s in obj["shards"]]
            plan.manifest = obj.get("manifest")
            plan.published = obj.get("published")
            plan.escrow = obj.get("escrow")
        except (OSError, ValueError, KeyError, TypeError):
            return cls(directory=directory, fingerprint=fingerprint)
        return plan


class UploadSessions:
    """Open upload sessions of a dataset's staging area, by blob digest (survives crashes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = json.loads(path.read_text())
            self.sessions: dict[str, str] = {str(k): str(v) for k, v in dict(data).items()}
        except (OSError, ValueError, TypeError):
            self.sessions = {}

    def get(self, digest: str) -> str | None:
        return self.sessions.get(digest)

    def set(self, digest: str, upload_id: str | None) -> None:
        if upload_id is None:
            self.sessions.pop(digest, None)
        else:
            self.sessions[digest] = upload_id
        _atomic_write_json(self.path, self.sessions)


def _atomic_write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def encode(
    inputs: list[Input],
    schema: pa.Schema,
    plan: Plan,
    *,
    shard_bytes: int,
    chunk_bytes: int,
    compression: Compression,
    progress: Progress,
    groups: dict[str, list[str]] | None = None,
    seal: Callable[[int, str], ShardCipher] | None = None,
    on_shard: Callable[[ShardFile], None] = lambda _shard: None,
    chunk_digest: str = DEFAULT_CHUNK_DIGEST,
) -> None:
    """Encode the inputs into the plan's shards (sealed by ``seal(shard, group)`` if given),
    calling ``on_shard`` with each shard as soon as it is written, in order."""
    for old in plan.directory.glob("shard-*"):
        old.unlink()
    writer = ShardWriter(
        plan.directory,
        schema,
        shard_bytes=shard_bytes,
        chunk_bytes=chunk_bytes,
        compression=compression,
        groups=groups,
        seal=seal,
        chunk_digest=chunk_digest,
    )
    task = progress.add_task("encoding (bytes read)", total=None)
    batches = read_ahead(
        conform(batch, schema, inp.label)
        for inp in inputs
        for batch in wrap_arrow_errors(inp.label, inp.batches())
    )
    handed = 0
    try:
        for batch in batches:
            writer.write(batch)
            progress.advance(task, batch_bytes(batch))
            shards = writer.shards
            for shard in shards[handed:]:
                on_shard(shard)
            handed = len(shards)
        shards = writer.close()
        for shard in shards[handed:]:
            on_shard(shard)
    except BaseException:
        writer.abort()
        raise
    finally:
        batches.close()
    if not shards:
        raise MalformedError("nothing to publish: the inputs hold no rows")
    plan.shards = shards
    plan.schema_b64 = base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")
    plan.columns = [{"name": f.name, "type": str(f.type)} for f in schema]
    plan.manifest = None
    plan.published = None
    plan.escrow = None
    plan.save()


_END = object()


def read_ahead(items: Iterable[Any], depth: int = READ_AHEAD) -> Generator[Any, None, None]:
    """The items of ``items``, produced on a thread of their own up to ``depth`` ahead; an
    error there is raised here, in order. Closing the iterator stops the thread.

    The reading side only calls ``SimpleQueue`` methods, which are C code: a Ctrl-C that lands
    while it waits raises ``KeyboardInterrupt`` cleanly. (A ``queue.Queue`` waits in Python's
    ``threading.Condition``, and an interrupt there can leave its lock half-released:
    ``RuntimeError: release unlocked lock`` instead of the interrupt, seen once in CI.)"""
    ready: queue.SimpleQueue[Any] = queue.SimpleQueue()
    room: queue.SimpleQueue[None] = queue.SimpleQueue()  # one token per free place
    for _ in range(depth):
        room.put(None)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                room.get(timeout=0.05)
            except queue.Empty:
                continue
            ready.put(item)
            return True
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:
            put(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="ostraca-read", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _END:
            room.put(None)
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def upload_blob(
    client: RegistryClient,
    sessions: UploadSessions,
    *,
    namespace: str,
    digest: str,
    path: Path,
    size: int,
    piece_bytes: int,
    on_bytes: Callable[[int], None],
) -> int:
    """Upload one blob, resuming a recorded session; returns the bytes sent by this call."""
    upload_id = sessions.get(digest)
    offset = 0
    if upload_id is not None:
        try:
            status = client.upload_status(upload_id)
            offset = status.offset
            if status.size is not None and status.size != size:
                raise NotFoundError("stale session")  # noqa: TRY301 — start a fresh session
        except NotFoundError:
            upload_id = None
            offset = 0
    if upload_id is None:
        upload_id = client.start_upload(namespace, size).upload_id
        sessions.set(digest, upload_id)
    on_bytes(offset)
    sent = 0
    with open(path, "rb") as fh:
        fh.seek(offset)
        while offset < size:
            data = fh.read(min(piece_bytes, size - offset))
            if not data:
                raise MalformedError(f"{path} is shorter than planned: the staging area changed")
            try:
                status = client.patch_upload(upload_id, offset, data)
            except RangeNotSatisfiableError:
                status = client.upload_status(upload_id)  # the registry has more (or less)
            else:
                sent += len(data)
            on_bytes(status.offset - offset)
            if status.offset != offset + len(data):
                fh.seek(status.offset)
            offset = status.offset
    client.finish_upload(upload_id, f"sha256:{digest}")
    sessions.set(digest, None)
    return sent


class Uploader:
    """Uploads the staged blobs ``namespace`` lacks, one at a time on a thread of its own, in
    the order they are added, so a publish hands each shard over as soon as it is written and
    goes on encoding. The same bytes elsewhere on the registry are sent again (knowing a digest
    proves nothing). The caller must not use ``client`` until :meth:`finish` returned."""

    def __init__(
        self,
        client: RegistryClient,
        sessions: UploadSessions,
        *,
        namespace: str,
        piece_bytes: int,
        on_bytes: Callable[[int], None],
    ) -> None:
        self._client = client
        self._sessions = sessions
        self._namespace = namespace
        self._piece_bytes = piece_bytes
        self._on_bytes = on_bytes
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ostraca-upload")
        self._jobs: list[Future[int | None]] = []
        self._seen: set[str] = set()
        self._failed = threading.Event()

    def add(self, shard: ShardFile) -> None:
        """Queue the blobs of ``shard`` (every column group's stream and chunk list). After an
        upload failed the rest are not sent (:meth:`finish` raises the error), but the caller
        goes on: the encoding it finishes is staged for the re-run."""
        for f in shard.files():
            for digest, path, size in (
                (f.sha256, f.path, f.bytes),
                (f.chunks, f.chunk_list_path, f.chunk_list_bytes),
            ):
                if digest not in self._seen:
                    self._seen.add(digest)
                    self._jobs.append(self._pool.submit(self._upload, digest, path, size))

    def _upload(self, digest: str, path: Path, size: int) -> int | None:
        """Bytes sent, or ``None`` where the namespace has the blob already."""
        if self._failed.is_set():
            raise CancelledError(f"not uploaded after an earlier upload failed: {path.name}")
        try:
            if self._client.blob_exists(self._namespace, digest):
                return None
            return upload_blob(
                self._client,
                self._sessions,
                namespace=self._namespace,
                digest=digest,
                path=path,
                size=size,
                piece_bytes=self._piece_bytes,
                on_bytes=self._on_bytes,
            )
        except BaseException:
            self._failed.set()
            raise

    def finish(self) -> tuple[int, int, int]:
        """Wait for every upload: (blobs uploaded, bytes sent, blobs skipped); raises the first
        upload's error."""
        self._pool.shutdown(wait=True)
        sent = [n for n in (j.result() for j in self._jobs) if n is not None]
        return len(sent), sum(sent), len(self._jobs) - len(sent)

    def cancel(self) -> None:
        """Drop the uploads not yet started and wait for the one under way (after an error)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def fingerprint_of(inputs: list[Input], options: dict[str, Any]) -> str | None:
    if any(i.fingerprint is None for i in inputs):
        return None
    obj = {"inputs": [i.fingerprint for i in inputs], "options": options}
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def open_plan(area: Path, inputs: list[Input], options: dict[str, Any]) -> Plan:
    """The plan in ``area`` (a dataset's staging folder) for these inputs and options; a fresh,
    ephemeral one for in-memory inputs, which cannot be recognised across runs."""
    fingerprint = fingerprint_of(inputs, options)
    if fingerprint is None:
        return Plan(directory=area / f"mem-{uuid.uuid4().hex}", fingerprint="", ephemeral=True)
    return Plan.load(area / fingerprint[:24], fingerprint)
