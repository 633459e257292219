"""Reading a publish's inputs: Parquet, CSV, JSONL and Arrow IPC files (file or stream format),
directories of them, ``pyarrow`` tables and iterators of record batches; one schema for all of
them (:func:`unify_schemas`) and each batch conformed to it (:func:`conform`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from ostraca.protocol_spec import MalformedError, NotFoundError

__all__ = [
    "KNOWN_SUFFIXES",
    "Input",
    "Source",
    "conform",
    "open_inputs",
    "unify_schemas",
    "wrap_arrow_errors",
]

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
ARROW_SUFFIXES = (".arrow", ".arrows", ".feather", ".ipc")
KNOWN_SUFFIXES = PARQUET_SUFFIXES + CSV_SUFFIXES + JSON_SUFFIXES + ARROW_SUFFIXES

Source: TypeAlias = str | os.PathLike[str] | pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch]
"""One input: a file or directory path, a table, a batch, or an iterable of batches."""


@dataclass
class Input:
    label: str
    schema: pa.Schema
    batches: Callable[[], Iterator[pa.RecordBatch]]
    rows: int | None = None
    fingerprint: list[Any] | None = None
    """``None`` for in-memory inputs, which cannot be recognised across runs."""


def wrap_arrow_errors(label: str, it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    try:
        yield from it
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise MalformedError(f"cannot read {label}: {exc}") from exc


def _file_fingerprint(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _open_file(path: Path) -> Input:
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

            return Input(label, schema, parquet_batches, rows, fingerprint)
        if suffix in CSV_SUFFIXES or suffix in JSON_SUFFIXES:
            opener: Callable[[Path], Any] = (
                pa_csv.open_csv if suffix in CSV_SUFFIXES else pa_json.open_json
            )
            schema = opener(path).schema

            def text_batches() -> Iterator[pa.RecordBatch]:
                # Type inference uses the first block: pin its schema for the rest of the file.
                yield from opener(path)

            return Input(label, schema, text_batches, None, fingerprint)
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

                return Input(label, schema, ipc_file_batches, rows, fingerprint)
            schema = pa.ipc.open_stream(pa.memory_map(str(path))).schema

            def ipc_stream_batches() -> Iterator[pa.RecordBatch]:
                with pa.memory_map(str(path)) as source:
                    yield from pa.ipc.open_stream(source)

            return Input(label, schema, ipc_stream_batches, None, fingerprint)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise MalformedError(f"cannot read {label}: {exc}") from exc
    raise MalformedError(
        f"cannot tell the format of {label} from its suffix",
        hint=f"use one of {', '.join(KNOWN_SUFFIXES)}",
    )


def _open_path(path: Path) -> list[Input]:
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


def conform(batch: pa.RecordBatch, schema: pa.Schema, label: str) -> pa.RecordBatch:
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
