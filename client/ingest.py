"""Reading a publish's inputs: Parquet, CSV, JSONL and Arrow IPC files (file or stream format),
directories of them, ``pyarrow`` tables and iterators of record batches; one schema for all of
them (:func:`unify_schemas`) and each batch conformed to it (:func:`conform`).

A file's format is sniffed from its first bytes (:func:`sniff`): ``ARROW1`` is an Arrow IPC
file, ``PAR1`` Parquet, the continuation marker ``FF FF FF FF`` an IPC stream — whatever the
file is called, so ``.arrow_file`` or a name without an extension works; only then the suffix
decides (CSV, JSONL, a legacy IPC stream), and a file that starts with ``{`` is JSONL. In a
directory, files with a known suffix or Arrow/Parquet magic are read (others, such as a README,
are left out). A directory laid out as Hive partitions (``year=2023/month=01/part.parquet``)
keeps its partition columns, appended after the file's own: ``int32`` (``int64`` when one does
not fit) when every value of the key is an integer, else ``string``; the value
``__HIVE_DEFAULT_PARTITION__`` is null.

CSV nulls (:data:`CSV_CONVERT`): an empty field is null in every column, strings included; a
quoted empty field (``""``) is the empty string; no other spelling (``NA``, ``NULL``, ``nan``)
means null.

Every unreadable input — malformed IPC or Parquet, a CSV that does not parse, duplicate column
names — is a :class:`MalformedError` that names the file and says what is wrong. Sizes of
batches are counted with :func:`batch_bytes` (never ``RecordBatch.nbytes``, which crashes on
some union arrays in pyarrow 26).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from ostraca.protocol_spec import MalformedError, NotFoundError

__all__ = [
    "CSV_CONVERT",
    "KNOWN_SUFFIXES",
    "Input",
    "Source",
    "batch_bytes",
    "conform",
    "open_inputs",
    "sniff",
    "unify_schemas",
    "wrap_arrow_errors",
]

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
ARROW_SUFFIXES = (".arrow", ".arrows", ".feather", ".ipc", ".arrow_file", ".arrow_stream")
KNOWN_SUFFIXES = PARQUET_SUFFIXES + CSV_SUFFIXES + JSON_SUFFIXES + ARROW_SUFFIXES

CSV_CONVERT = pa_csv.ConvertOptions(
    null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False
)
"""How CSV fields become nulls (see the module's doc)."""

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_INTEGER = re.compile(r"^-?[0-9]{1,18}$")

READ_ERRORS = (pa.ArrowException, OSError, ValueError)
"""What pyarrow raises for an input it cannot read (malformed IPC is an ``OSError``)."""

Source: TypeAlias = str | os.PathLike[str] | pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch]
"""One input: a file or directory path, a table, a batch, or an iterable of batches."""

Opened: TypeAlias = tuple[pa.Schema, int | None, Callable[[], Iterator[pa.RecordBatch]]]


@dataclass
class Input:
    label: str
    schema: pa.Schema
    batches: Callable[[], Iterator[pa.RecordBatch]]
    rows: int | None = None
    fingerprint: list[Any] | None = None
    """``None`` for in-memory inputs, which cannot be recognised across runs."""

    def __post_init__(self) -> None:
        twice = sorted(n for n, k in Counter(self.schema.names).items() if k > 1)
        if twice:
            raise MalformedError(
                f"{self.label} has duplicate column names: {', '.join(map(repr, twice))}",
                hint="rename the columns so that each name is used once",
            )


def _has_union(t: pa.DataType) -> bool:
    if pa.types.is_union(t):
        return True
    return any(_has_union(t.field(i).type) for i in range(t.num_fields))


def batch_bytes(batch: pa.RecordBatch) -> int:
    """The bytes of ``batch``'s data, safe for every Arrow type: ``nbytes`` (which respects a
    slice's offset) unless a union is inside, where pyarrow 26's ``nbytes`` can crash and the
    total size of the buffers is used instead."""
    if any(_has_union(field.type) for field in batch.schema):
        return int(batch.get_total_buffer_size())
    return int(batch.nbytes)


def wrap_arrow_errors(label: str, it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The batches of ``it`` that hold rows (an empty one adds nothing to a shard, and pyarrow
    26 crashes measuring some empty union batches); read errors as :class:`MalformedError`."""
    try:
        for batch in it:
            if batch.num_rows:
                yield batch
    except READ_ERRORS as exc:
        raise MalformedError(f"cannot read {label}: {exc}") from exc


def sniff(path: Path, *, by_name: bool = True) -> str | None:
    """``"parquet"``, ``"ipc_file"``, ``"ipc_stream"``, ``"csv"`` or ``"json"``: from the
    file's magic bytes, then (``by_name``) its suffix or a leading ``{``; ``None``: unknown."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(b"ARROW1"):
        return "ipc_file"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\xff\xff\xff\xff"):
        return "ipc_stream"
    if not by_name:
        return None
    suffix = path.suffix.lower()
    for fmt, suffixes in (
        ("parquet", PARQUET_SUFFIXES),
        ("csv", CSV_SUFFIXES),
        ("json", JSON_SUFFIXES),
        ("ipc_stream", ARROW_SUFFIXES),
    ):
        if suffix in suffixes:
            return fmt
    return "json" if head.lstrip().startswith(b"{") else None


def _file_fingerprint(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


PARQUET_BATCH_BYTES = 4 * 1024 * 1024
"""Read Parquet in batches of about this many decoded bytes: a fixed row count costs ~4x the
CPU for wide rows (65,536 rows of 8 KB are 0.5 GB, concatenated across row groups and sliced
again by the shard writer). Measured as the row groups' uncompressed Parquet size."""


def _parquet_batch_rows(meta: pq.FileMetaData) -> int:
    """Rows per batch of about :data:`PARQUET_BATCH_BYTES` (from the row groups' sizes)."""
    rows = meta.num_rows
    if not rows:
        return 65536
    size = sum(int(meta.row_group(i).total_byte_size) for i in range(meta.num_row_groups))
    return max(1, min(65536, PARQUET_BATCH_BYTES * int(rows) // max(1, size)))


def _parquet(path: Path) -> Opened:
    meta = pq.ParquetFile(path)
    batch_rows = _parquet_batch_rows(meta.metadata)

    def batches() -> Iterator[pa.RecordBatch]:
        with pq.ParquetFile(path) as pf:
            yield from pf.iter_batches(batch_size=batch_rows)

    return meta.schema_arrow, meta.metadata.num_rows, batches


def _text(path: Path, fmt: str) -> Opened:
    def reader() -> Any:
        if fmt == "csv":
            return pa_csv.open_csv(path, convert_options=CSV_CONVERT)
        return pa_json.open_json(path)

    # Type inference uses the first block: its schema holds for the rest of the file.
    return reader().schema, None, lambda: iter(reader())


def _ipc_file(path: Path) -> Opened:
    reader = pa.ipc.open_file(path)

    def batches() -> Iterator[pa.RecordBatch]:
        with pa.memory_map(str(path)) as source:
            r = pa.ipc.open_file(source)
            for i in range(r.num_record_batches):
                yield r.get_batch(i)

    return reader.schema, None, batches


def _ipc_stream(path: Path) -> Opened:
    with pa.memory_map(str(path)) as source:
        schema = pa.ipc.open_stream(source).schema

    def batches() -> Iterator[pa.RecordBatch]:
        with pa.memory_map(str(path)) as source:
            yield from pa.ipc.open_stream(source)

    return schema, None, batches


_READERS: dict[str, Callable[[Path], Opened]] = {
    "parquet": _parquet,
    "csv": lambda p: _text(p, "csv"),
    "json": lambda p: _text(p, "json"),
    "ipc_file": _ipc_file,
    "ipc_stream": _ipc_stream,
}


def _open_file(path: Path, partition: Sequence[tuple[str, pa.Scalar]] = ()) -> Input:
    label = str(path)
    fmt = sniff(path)
    if fmt is None:
        raise MalformedError(
            f"cannot tell the format of {label}: no Arrow or Parquet magic bytes, and its "
            "name says neither CSV nor JSONL",
            hint=f"name it with one of {', '.join(KNOWN_SUFFIXES)}",
        )
    try:
        schema, rows, batches = _READERS[fmt](path)
    except READ_ERRORS as exc:
        raise MalformedError(f"cannot read {label} ({fmt.replace('_', ' ')}): {exc}") from exc
    if partition:
        schema, batches = _with_partition(label, schema, batches, partition)
    return Input(label, schema, batches, rows, _file_fingerprint(path))


def _with_partition(
    label: str,
    schema: pa.Schema,
    batches: Callable[[], Iterator[pa.RecordBatch]],
    partition: Sequence[tuple[str, pa.Scalar]],
) -> tuple[pa.Schema, Callable[[], Iterator[pa.RecordBatch]]]:
    """``schema`` and ``batches`` with the Hive partition columns appended (constants)."""
    clash = [k for k, _ in partition if k in schema.names]
    if clash:
        raise MalformedError(f"{label}: partition key {clash[0]!r} is also a column of the file")
    full = pa.schema([*schema, *(pa.field(k, v.type) for k, v in partition)], schema.metadata)

    def with_keys() -> Iterator[pa.RecordBatch]:
        for batch in batches():
            extra = [pa.repeat(v, batch.num_rows) for _, v in partition]
            yield pa.RecordBatch.from_arrays([*batch.columns, *extra], schema=full)

    return full, with_keys


def _partitions(root: Path, files: Sequence[Path]) -> dict[Path, list[tuple[str, pa.Scalar]]]:
    """Each file's Hive partition values (``key=value`` folders under ``root``), typed alike
    for every file: ``int32`` when all values of a key are integers, else ``string``."""
    raw = {
        f: [part.split("=", 1) for part in f.relative_to(root).parent.parts if "=" in part]
        for f in files
    }
    values: dict[str, list[str]] = {}
    for pairs in raw.values():
        for key, value in pairs:
            values.setdefault(key, []).append(unquote(value))
    types = {key: _hive_type([v for v in vs if v != HIVE_NULL]) for key, vs in values.items()}
    return {f: [(k, _hive_value(v, types[k])) for k, v in pairs] for f, pairs in raw.items()}


def _hive_type(values: Sequence[str]) -> pa.DataType:
    if not all(_INTEGER.match(v) for v in values):
        return pa.string()
    return pa.int32() if all(abs(int(v)) < 2**31 for v in values) else pa.int64()


def _hive_value(raw: str, type_: pa.DataType) -> pa.Scalar:
    value = unquote(raw)
    return pa.scalar(None if value == HIVE_NULL else value, pa.string()).cast(type_)


def _open_path(path: Path) -> list[Input]:
    if not path.exists():
        raise NotFoundError(f"no such file or directory: {path}")
    if not path.is_dir():
        return [_open_file(path)]
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
        and (p.suffix.lower() in KNOWN_SUFFIXES or sniff(p, by_name=False) is not None)
    )
    if not files:
        raise MalformedError(
            f"directory {path} holds no data files ({', '.join(KNOWN_SUFFIXES)}, or Arrow or "
            "Parquet by content)"
        )
    partitions = _partitions(path, files)
    keys = {tuple(k for k, _ in pairs) for pairs in partitions.values()}
    if len(keys) > 1:
        raise MalformedError(
            f"directory {path}: files lie under different partition keys "
            f"({' / '.join(sorted('/'.join(k) or '(none)' for k in keys))})"
        )
    return [_open_file(p, partitions[p]) for p in files]


def _open_batches(label: str, batches: Iterable[pa.RecordBatch]) -> Input:
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

    return Input(label, first.schema, batches_once)


def _batches_of(data: pa.Table | pa.RecordBatch) -> Callable[[], Iterator[pa.RecordBatch]]:
    def batches() -> Iterator[pa.RecordBatch]:
        if isinstance(data, pa.Table):
            yield from data.to_batches()
        else:
            yield data

    return batches


def open_inputs(sources: Source | Sequence[Source]) -> list[Input]:
    """Resolve ``sources`` into inputs, each with its schema (read cheaply, from headers)."""
    items: Sequence[Source] = sources if isinstance(sources, list | tuple) else [sources]
    if not items:
        raise MalformedError("nothing to publish: no inputs given")
    inputs: list[Input] = []
    for n, item in enumerate(items):
        if isinstance(item, str | os.PathLike):
            inputs.extend(_open_path(Path(item)))
        elif isinstance(item, pa.Table):
            inputs.append(Input(f"table #{n + 1}", item.schema, _batches_of(item), len(item)))
        elif isinstance(item, pa.RecordBatch):
            inputs.append(Input(f"batch #{n + 1}", item.schema, _batches_of(item), item.num_rows))
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


def conform(batch: pa.RecordBatch, schema: pa.Schema, label: str) -> pa.RecordBatch:
    if batch.schema.equals(schema):
        return batch
    try:
        batch = batch.select(schema.names)
        return pa.RecordBatch.from_arrays(
            [col.cast(f.type) for col, f in zip(batch.columns, schema, strict=True)],
            schema=schema,
        )
    except (*READ_ERRORS, KeyError) as exc:
        raise MalformedError(f"{label}: a batch does not fit the unified schema: {exc}") from exc


# ── staging: the plan that makes a publish resumable ─────────────────────────────────────────
