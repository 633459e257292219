"""Publishing a dataset version: inputs → Arrow IPC shards → signed manifest → registry.

:func:`publish` reads Parquet, CSV, JSONL and Arrow IPC files (file or stream format), directories
of them, ``pyarrow`` tables and iterators of record batches; unifies their schemas; writes shards
of about ``shard_bytes`` (see :mod:`.shards` for the format) into a staging directory, hashing
while writing; signs the manifest locally; uploads only the blobs the registry lacks, in
resumable chunks; and publishes the version (which the registry makes visible atomically).

Resuming: the staging directory ``$OSTRACA_HOME/staging/<ns>/<name>/<fingerprint>/`` is keyed
by the input files (path, size, mtime) and the encoding options. It records the shard plan,
digests and the signed manifest, so re-running an interrupted publish with the same inputs
neither re-encodes nor re-uploads: blobs already on the registry are skipped (``HEAD``), and an
upload session that was cut off continues from the registry's offset. In-memory inputs
(tables, batch iterators) are re-encoded — deterministically, so the digests are the same and
the same skipping applies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from ostraca.protocol_spec import (
    Column,
    ConflictError,
    DatasetManifest,
    Envelope,
    MalformedError,
    NotFoundError,
    ShardEntry,
    SigningKey,
    sign_statement,
    split_dataset,
    utc_now,
)
from ostraca.protocol_spec.errors import RangeNotSatisfiableError
from ostraca.protocol_spec.models import SPDX_PATTERN

from .api import RegistryClient
from .files import atomic_write
from .shards import (
    COMPRESSIONS,
    DEFAULT_CHUNK_BYTES,
    DEFAULT_SHARD_BYTES,
    Compression,
    ShardFile,
    ShardWriter,
)

__all__ = [
    "UPLOAD_PIECE_BYTES",
    "PublishResult",
    "Source",
    "open_inputs",
    "publish",
    "unify_schemas",
]

UPLOAD_PIECE_BYTES = 8 * 1024 * 1024
"""Bytes per ``PATCH`` of a resumable upload."""
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
ARROW_SUFFIXES = (".arrow", ".arrows", ".feather", ".ipc")
KNOWN_SUFFIXES = PARQUET_SUFFIXES + CSV_SUFFIXES + JSON_SUFFIXES + ARROW_SUFFIXES
_PLAN_VERSION = 1

Source: TypeAlias = str | os.PathLike[str] | pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch]
"""One input: a file or directory path, a table, a batch, or an iterable of batches."""


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What a publish did. ``blobs_uploaded``/``bytes_uploaded`` count this run only."""

    dataset: str
    version: int
    digest: str
    shards: tuple[ShardEntry, ...]
    total_rows: int
    total_bytes: int
    blobs_uploaded: int
    bytes_uploaded: int
    blobs_skipped: int
    encoded: bool
    """Whether this run encoded the shards (``False``: reused a staged encoding)."""
    already_published: bool
    """The same inputs were already published as this version: nothing was done."""
    staging_dir: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "version": self.version,
            "digest": self.digest,
            "shards": len(self.shards),
            "total_rows": self.total_rows,
            "total_bytes": self.total_bytes,
            "blobs_uploaded": self.blobs_uploaded,
            "bytes_uploaded": self.bytes_uploaded,
            "blobs_skipped": self.blobs_skipped,
            "encoded": self.encoded,
            "already_published": self.already_published,
        }


# ── inputs ───────────────────────────────────────────────────────────────────────────────────


@dataclass
class _Input:
    label: str
    schema: pa.Schema
    batches: Callable[[], Iterator[pa.RecordBatch]]
    rows: int | None = None
    fingerprint: list[Any] | None = None
    """``None`` for in-memory inputs, which cannot be recognised across runs."""


def _wrap_arrow_errors(label: str, it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    try:
        yield from it
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise MalformedError(f"cannot read {label}: {exc}") from exc


def _file_fingerprint(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _open_file(path: Path) -> _Input:
    label = str(path)
    suffix = path.suffix.lower()
    fingerprint = _file_fingerprint(path)
    try:
        if suffix in PARQUET_SUFFIXES:
            meta = pq.ParquetFile(path)
            schema, rows = meta.schema_arrow, meta.metadata.num_rows

            def parquet_batches() -> Iterator[pa.RecordBatch]:
                with pq.ParquetFile(path) as pf:
                    yield from pf.iter_batches(batch_size=65536)

            return _Input(label, schema, parquet_batches, rows, fingerprint)
        if suffix in CSV_SUFFIXES or suffix in JSON_SUFFIXES:
            opener: Callable[[Path], Any] = (
                pa_csv.open_csv if suffix in CSV_SUFFIXES else pa_json.open_json
            )
            schema = opener(path).schema

            def text_batches() -> Iterator[pa.RecordBatch]:
                # Type inference uses the first block: pin its schema for the rest of the file.
                yield from opener(path)

            return _Input(label, schema, text_batches, None, fingerprint)
        if suffix in ARROW_SUFFIXES:
            with open(path, "rb") as fh:
                is_file_format = fh.read(6) == b"ARROW1"
            if is_file_format:
                reader = pa.ipc.open_file(path)
                schema, rows = reader.schema, None

                def ipc_file_batches() -> Iterator[pa.RecordBatch]:
                    with pa.memory_map(str(path)) as source:
                        r = pa.ipc.open_file(source)
                        for i in range(r.num_record_batches):
                            yield r.get_batch(i)

                return _Input(label, schema, ipc_file_batches, rows, fingerprint)
            schema = pa.ipc.open_stream(pa.memory_map(str(path))).schema

            def ipc_stream_batches() -> Iterator[pa.RecordBatch]:
                with pa.memory_map(str(path)) as source:
                    yield from pa.ipc.open_stream(source)

            return _Input(label, schema, ipc_stream_batches, None, fingerprint)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise MalformedError(f"cannot read {label}: {exc}") from exc
    raise MalformedError(
        f"cannot tell the format of {label} from its suffix",
        hint=f"use one of {', '.join(KNOWN_SUFFIXES)}",
    )


def _open_path(path: Path) -> list[_Input]:
    if not path.exists():
        raise NotFoundError(f"no such file or directory: {path}")
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and p.suffix.lower() in KNOWN_SUFFIXES
        )
        if not files:
            raise MalformedError(
                f"directory {path} holds no data files ({', '.join(KNOWN_SUFFIXES)})"
            )
        return [_open_file(p) for p in files]
    return [_open_file(path)]


def _open_batches(label: str, batches: Iterable[pa.RecordBatch]) -> _Input:
    it = iter(batches)
    try:
        first = next(it)
    except StopIteration:
        raise MalformedError(f"{label} yielded no record batches") from None
    if not isinstance(first, pa.RecordBatch):
        raise MalformedError(f"{label} must yield pyarrow.RecordBatch, not {type(first).__name__}")
    used = False

    def batches_once() -> Iterator[pa.RecordBatch]:
        nonlocal used
        if used:
            raise MalformedError(f"{label} is an iterator and can be read only once")
        used = True
        yield first
        yield from it

    return _Input(label, first.schema, batches_once)


def _batches_of(data: pa.Table | pa.RecordBatch) -> Callable[[], Iterator[pa.RecordBatch]]:
    def batches() -> Iterator[pa.RecordBatch]:
        if isinstance(data, pa.Table):
            yield from data.to_batches()
        else:
            yield data

    return batches


def open_inputs(sources: Source | Sequence[Source]) -> list[_Input]:
    """Resolve ``sources`` into inputs, each with its schema (read cheaply, from headers)."""
    items: Sequence[Source] = sources if isinstance(sources, list | tuple) else [sources]
    if not items:
        raise MalformedError("nothing to publish: no inputs given")
    inputs: list[_Input] = []
    for n, item in enumerate(items):
        if isinstance(item, str | os.PathLike):
            inputs.extend(_open_path(Path(item)))
        elif isinstance(item, pa.Table):
            inputs.append(_Input(f"table #{n + 1}", item.schema, _batches_of(item), len(item)))
        elif isinstance(item, pa.RecordBatch):
            inputs.append(_Input(f"batch #{n + 1}", item.schema, _batches_of(item), item.num_rows))
        elif isinstance(item, pa.RecordBatchReader):
            inputs.append(_open_batches(f"reader #{n + 1}", item))
        elif isinstance(item, Iterable):
            inputs.append(_open_batches(f"batch iterator #{n + 1}", item))
        else:
            raise MalformedError(f"cannot publish a {type(item).__name__}")
    return inputs


def unify_schemas(schemas: Sequence[tuple[str, pa.Schema]]) -> pa.Schema:
    """One schema for all inputs, or :class:`MalformedError` with a per-column diff.

    Inputs must have the same column names (any order; the first input's order wins). Types may
    differ only by what Arrow promotes safely (``null`` → anything, narrower → wider integers,
    integers → floats, ``string`` → ``large_string``); nullability is merged.
    """
    label0, first = schemas[0]
    if all(s.equals(first) for _, s in schemas[1:]):
        return first
    names = list(first.names)
    problems: list[str] = []
    for label, schema in schemas[1:]:
        missing = [n for n in names if n not in schema.names]
        extra = [n for n in schema.names if n not in names]
        for n in missing:
            problems.append(f"column {n!r}: in {label0}, missing in {label}")
        for n in extra:
            problems.append(f"column {n!r}: in {label}, missing in {label0}")
    for label, schema in schemas:
        if len(set(schema.names)) != len(schema.names):
            problems.append(f"{label} has duplicate column names")
    if not problems:
        ordered = [pa.schema([s.field(n) for n in names], metadata=s.metadata) for _, s in schemas]
        try:
            return pa.unify_schemas(ordered, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            pass
        for n in names:
            types = {label: s.field(n).type for label, s in schemas}
            try:
                pa.unify_schemas(
                    [pa.schema([pa.field(n, t)]) for t in types.values()],
                    promote_options="permissive",
                )
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                listed = ", ".join(f"{t} in {label}" for label, t in types.items())
                problems.append(f"column {n!r}: {listed}")
    if not problems:
        problems.append("Arrow cannot unify them")
    raise MalformedError("the inputs' schemas do not match: " + "; ".join(problems))


def _conform(batch: pa.RecordBatch, schema: pa.Schema, label: str) -> pa.RecordBatch:
    if batch.schema.equals(schema):
        return batch
    try:
        batch = batch.select(schema.names)
        return pa.RecordBatch.from_arrays(
            [col.cast(f.type) for col, f in zip(batch.columns, schema, strict=True)],
            schema=schema,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, KeyError) as exc:
        raise MalformedError(f"{label}: a batch does not fit the unified schema: {exc}") from exc


# ── staging: the plan that makes a publish resumable ─────────────────────────────────────────


@dataclass
class _Plan:
    directory: Path
    fingerprint: str
    schema_b64: str = ""
    columns: list[dict[str, str]] = field(default_factory=list)
    shards: list[ShardFile] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    published: dict[str, Any] | None = None

    @property
    def path(self) -> Path:
        return self.directory / "plan.json"

    @property
    def encoded(self) -> bool:
        return bool(self.shards) and all(
            s.path.is_file()
            and s.path.stat().st_size == s.bytes
            and s.chunk_list_path.is_file()
            and s.chunk_list_path.stat().st_size == s.chunk_list_bytes
            for s in self.shards
        )

    def save(self) -> None:
        obj = {
            "plan_version": _PLAN_VERSION,
            "fingerprint": self.fingerprint,
            "schema_b64": self.schema_b64,
            "columns": self.columns,
            "shards": [s.to_json() for s in self.shards],
            "manifest": self.manifest,
            "published": self.published,
        }
        _atomic_write_json(self.path, obj)

    @classmethod
    def load(cls, directory: Path, fingerprint: str) -> _Plan:
        plan = cls(directory=directory, fingerprint=fingerprint)
        try:
            obj = json.loads(plan.path.read_text())
            if obj.get("plan_version") != _PLAN_VERSION or obj.get("fingerprint") != fingerprint:
                return plan
            plan.schema_b64 = str(obj["schema_b64"])
            plan.columns = list(obj["columns"])
            plan.shards = [ShardFile.from_json(directory, s) for s in obj["shards"]]
            plan.manifest = obj.get("manifest")
            plan.published = obj.get("published")
        except (OSError, ValueError, KeyError, TypeError):
            return cls(directory=directory, fingerprint=fingerprint)
        return plan


class _UploadSessions:
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


# ── publish ──────────────────────────────────────────────────────────────────────────────────


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        disable=not (enabled and sys.stderr.isatty()),
        transient=False,
    )


def _encode(
    inputs: list[_Input],
    schema: pa.Schema,
    plan: _Plan,
    *,
    shard_bytes: int,
    chunk_bytes: int,
    compression: Compression,
    progress: Progress,
) -> None:
    for old in plan.directory.glob("shard-*"):
        old.unlink()
    writer = ShardWriter(
        plan.directory,
        schema,
        shard_bytes=shard_bytes,
        chunk_bytes=chunk_bytes,
        compression=compression,
    )
    task = progress.add_task("encoding (bytes read)", total=None)
    try:
        for inp in inputs:
            for batch in _wrap_arrow_errors(inp.label, inp.batches()):
                writer.write(_conform(batch, schema, inp.label))
                progress.advance(task, batch.nbytes)
        shards = writer.close()
    except BaseException:
        writer.abort()
        raise
    if not shards:
        raise MalformedError("nothing to publish: the inputs hold no rows")
    plan.shards = shards
    plan.schema_b64 = base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")
    plan.columns = [{"name": f.name, "type": str(f.type)} for f in schema]
    plan.manifest = None
    plan.published = None
    plan.save()


def _upload_blob(
    client: RegistryClient,
    sessions: _UploadSessions,
    *,
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
        upload_id = client.start_upload(size).upload_id
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


def _fingerprint(inputs: list[_Input], options: dict[str, Any]) -> str | None:
    if any(i.fingerprint is None for i in inputs):
        return None
    obj = {"inputs": [i.fingerprint for i in inputs], "options": options}
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _build_manifest(
    client: RegistryClient,
    plan: _Plan,
    *,
    dataset: str,
    license: str,
    terms: str,
    description: str,
    chunk_bytes: int,
    key: SigningKey,
    latest_version: int,
    latest_digest: str | None,
) -> Envelope:
    """The plan's signed manifest if it still fits (chain position, texts), else a new one."""
    if plan.manifest is not None:
        env = Envelope.from_dict(plan.manifest)
        old = DatasetManifest.from_json_obj(json.loads(env.payload))
        if (
            old.version == latest_version + 1
            and old.previous == latest_digest
            and (old.license, old.terms, old.description) == (license, terms, description)
            and old.publisher == key.keyid
        ):
            return env
    manifest = DatasetManifest(
        dataset=dataset,
        version=latest_version + 1,
        previous=latest_digest,
        created=utc_now(),
        publisher=key.keyid,
        license=license,
        terms=terms,
        description=description,
        arrow_schema=plan.schema_b64,
        columns=[Column(name=c["name"], type=c["type"]) for c in plan.columns],
        chunk_bytes=chunk_bytes,
        shards=[s.entry() for s in plan.shards],
        total_rows=sum(s.rows for s in plan.shards),
        total_bytes=sum(s.bytes for s in plan.shards),
    )
    env = sign_statement(manifest, [key])
    plan.manifest = env.to_dict()
    plan.save()
    return env


def _result(
    plan: _Plan,
    env: Envelope,
    *,
    uploaded: int,
    sent: int,
    skipped: int,
    encoded: bool,
    again: bool,
) -> PublishResult:
    m = DatasetManifest.from_json_obj(json.loads(env.payload))
    return PublishResult(
        dataset=m.dataset,
        version=m.version,
        digest=env.digest,
        shards=tuple(m.shards),
        total_rows=m.total_rows,
        total_bytes=m.total_bytes,
        blobs_uploaded=uploaded,
        bytes_uploaded=sent,
        blobs_skipped=skipped,
        encoded=encoded,
        already_published=again,
        staging_dir=plan.directory,
    )


def publish(
    client: RegistryClient,
    sources: Source | Sequence[Source],
    *,
    dataset: str,
    license: str,
    terms: str,
    description: str = "",
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    compression: Compression = "zstd",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    key: SigningKey | None = None,
    progress: bool = True,
    upload_piece_bytes: int = UPLOAD_PIECE_BYTES,
) -> PublishResult:
    """Publish ``sources`` as the next version of ``dataset``; see the module docstring.

    ``key`` signs the manifest (default: the client's identity); it must be a key of the
    namespace's owner. Raises :class:`MalformedError` for unreadable inputs or schemas that do
    not match (with a per-column diff), and the registry's errors as they are.
    """
    split_dataset(dataset)
    if compression not in COMPRESSIONS:
        raise MalformedError(f"compression must be one of {', '.join(COMPRESSIONS)}")
    if chunk_bytes < 65536 or chunk_bytes & (chunk_bytes - 1):
        raise MalformedError("chunk_bytes must be a power of two of at least 64 KiB")
    if shard_bytes < chunk_bytes:
        raise MalformedError(f"shard_bytes must be at least chunk_bytes ({chunk_bytes})")
    if not terms.strip():
        raise MalformedError("terms must not be empty: say what users may do with the data")
    if upload_piece_bytes < 1:
        raise MalformedError("upload_piece_bytes must be positive")
    key = key or client.key
    _check_license(license)  # before an encode that might take minutes

    inputs = open_inputs(sources)
    schema = unify_schemas([(i.label, i.schema) for i in inputs])
    options = {
        "dataset": dataset,
        "shard_bytes": shard_bytes,
        "chunk_bytes": chunk_bytes,
        "compression": compression,
        "schema": base64.b64encode(schema.serialize().to_pybytes()).decode("ascii"),
    }
    ns, name = split_dataset(dataset)
    area = client.config.staging_dir / ns / name
    fingerprint = _fingerprint(inputs, options)
    ephemeral = fingerprint is None
    directory = area / (f"mem-{uuid.uuid4().hex}" if fingerprint is None else fingerprint[:24])
    plan = _Plan.load(directory, fingerprint or "")
    sessions = _UploadSessions(area / "uploads.json")

    detail = client.find_dataset(dataset)
    latest_version = detail.latest_version if detail is not None else 0
    latest_digest = (
        client.get_manifest_envelope(dataset, latest_version).digest if latest_version else None
    )

    with ExitStack() as stack:
        if ephemeral:
            stack.callback(shutil.rmtree, directory, ignore_errors=True)
        # Already done? Same inputs, and the registry's latest version is what we published
        # (perhaps by a run that died before it heard the answer).
        if plan.manifest is not None and latest_digest == Envelope.from_dict(plan.manifest).digest:
            env = Envelope.from_dict(plan.manifest)
            return _result(plan, env, uploaded=0, sent=0, skipped=0, encoded=False, again=True)
        bar = stack.enter_context(_progress(progress))
        encoded = False
        if not plan.encoded:
            _encode(
                inputs,
                schema,
                plan,
                shard_bytes=shard_bytes,
                chunk_bytes=chunk_bytes,
                compression=compression,
                progress=bar,
            )
            encoded = True
        env = _build_manifest(
            client,
            plan,
            dataset=dataset,
            license=license,
            terms=terms,
            description=description,
            chunk_bytes=chunk_bytes,
            key=key,
            latest_version=latest_version,
            latest_digest=latest_digest,
        )

        blobs: dict[str, tuple[Path, int]] = {}
        for s in plan.shards:
            blobs.setdefault(s.sha256, (s.path, s.bytes))
            blobs.setdefault(s.chunks, (s.chunk_list_path, s.chunk_list_bytes))
        missing = {d: v for d, v in blobs.items() if not client.blob_exists(d)}
        task: TaskID = bar.add_task(
            "uploading", total=sum(size for _, size in missing.values()) or None
        )
        uploaded = sent = 0
        for digest, (path, size) in missing.items():
            sent += _upload_blob(
                client,
                sessions,
                digest=digest,
                path=path,
                size=size,
                piece_bytes=upload_piece_bytes,
                on_bytes=lambda n: bar.advance(task, n),
            )
            uploaded += 1

        try:
            client.publish_version(env)
        except ConflictError:
            # Maybe our own earlier attempt got through and only the answer was lost.
            if client.get_manifest_envelope(dataset, "latest").digest != env.digest:
                raise
        plan.published = {"version": latest_version + 1, "digest": env.digest}
        plan.save()
        for s in plan.shards:
            s.path.unlink(missing_ok=True)
            s.chunk_list_path.unlink(missing_ok=True)
        return _result(
            plan,
            env,
            uploaded=uploaded,
            sent=sent,
            skipped=len(blobs) - len(missing),
            encoded=encoded,
            again=False,
        )
    raise AssertionError("unreachable")  # pragma: no cover


def _check_license(license: str) -> None:
    if not re.match(SPDX_PATTERN, license):
        raise MalformedError(
            f"licence {license!r} is not an SPDX identifier",
            hint="e.g. CC-BY-4.0, MIT, or LicenseRef-yourorg-terms for custom terms",
        )
