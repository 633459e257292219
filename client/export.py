"""Data out: a verified dataset version as a pandas, polars or Hugging Face ``datasets`` table,
or as Parquet files (which DuckDB, polars and pyarrow read directly) or Arrow IPC files (polars
and pyarrow; DuckDB through its ``arrow`` extension).

:class:`TableExports` is a mixin of both verified sources, a streamed version
(:class:`~.stream.VerifiedDataset`) and a pulled copy (:class:`~.local.PulledDataset`), built on
what both provide: ``to_table`` and ``read_shards``, which hand out only batches whose bytes
were verified against the signed manifest. ``to_pandas``, ``to_polars`` and ``to_hf`` need an
optional dependency each (the ``pandas``, ``polars`` and ``hf`` extras; ``to_hf(streaming=True)``
is a ``datasets.IterableDataset`` reading the shards on each pass); a missing one is
:class:`MissingDependencyError` (code ``missing_extra``, naming the extra), raised before a
byte is read.

:meth:`TableExports.export` writes one file per shard, in manifest order:
``part-00000.parquet`` (Parquet, zstd) or ``part-00000.arrow`` (the Arrow IPC *file* format,
with a footer: the shards themselves are IPC *streams*), each under a temporary name renamed
once complete, then ``export.json``: the provenance (dataset, version, manifest digest, grant,
licence, terms sha256) and each file's shard, rows, bytes and sha256. Exported files are plain
data: the signatures stop at this boundary, and ``export.json`` says where the rows came from.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pyarrow as pa

from ostraca.protocol_spec import ConflictError, DatasetManifest, MalformedError, Verified
from ostraca.protocol_spec.errors import OstracaError

from .source import Provenance, ShardSource

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

__all__ = [
    "EXTENSIONS",
    "SUMMARY_FILE",
    "ExportFormat",
    "ExportResult",
    "ExportedFile",
    "MissingDependencyError",
    "TableExports",
    "require",
]

ExportFormat = Literal["parquet", "arrow"]
EXTENSIONS: dict[str, str] = {"parquet": ".parquet", "arrow": ".arrow"}
SUMMARY_FILE = "export.json"


class MissingDependencyError(OstracaError):
    """An optional dependency is not installed; the hint is the ``pip install`` of its extra."""

    code = "missing_extra"
    title = "An optional dependency is not installed"


def require(module: str, *, extra: str, what: str) -> ModuleType:
    """Import ``module`` for ``what``, or raise :class:`MissingDependencyError` naming
    ``extra`` (a module that is installed but fails to import raises as it does)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        package = module.partition(".")[0]
        if (exc.name or "").partition(".")[0] != package:
            raise
        raise MissingDependencyError(
            f"{what} needs {package}, which is not installed",
            hint=f"pip install 'ostraca[{extra}]'",
        ) from exc


@dataclass(frozen=True, slots=True)
class ExportedFile:
    """One written file: its name in the export directory and what it holds."""

    name: str
    shard: int
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ExportResult:
    directory: Path
    format: str
    columns: list[str]
    provenance: Provenance
    files: list[ExportedFile]

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def to_json_obj(self) -> dict[str, Any]:
        """What ``export.json`` and ``ostraca export --json`` say."""
        return {
            "directory": str(self.directory),
            "format": self.format,
            "columns": self.columns,
            **asdict(self.provenance),
            "rows": self.rows,
            "bytes": self.bytes,
            "files": [asdict(f) for f in self.files],
        }


class _Tabular(ShardSource, Protocol):
    """What the mixin needs of its class (both verified sources have it)."""

    manifest: Verified[DatasetManifest]

    def to_table(self, *, columns: Sequence[str] | None = None) -> pa.Table: ...

    def _check_columns(self, columns: Sequence[str] | None) -> list[str] | None: ...

    def _projected_schema(self, columns: list[str] | None) -> pa.Schema: ...


class TableExports:
    """``to_pandas``, ``to_polars``, ``to_hf`` and ``export`` for a verified source (see the
    module doc). ``columns`` defaults to the source's projection; every read is limited to what
    the grant covers."""

    def to_pandas(self: _Tabular, *, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The version as a ``pandas.DataFrame`` (the ``pandas`` extra)."""
        require("pandas", extra="pandas", what="to_pandas()")
        frame: pd.DataFrame = self.to_table(columns=columns).to_pandas()
        return frame

    def to_polars(self: _Tabular, *, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """The version as a ``polars.DataFrame`` (the ``polars`` extra), zero-copy from Arrow."""
        polars = require("polars", extra="polars", what="to_polars()")
        frame: pl.DataFrame = polars.from_arrow(self.to_table(columns=columns))
        return frame

    def to_hf(
        self: _Tabular, *, columns: Sequence[str] | None = None, streaming: bool = False
    ) -> Any:
        """The version as a Hugging Face ``datasets.Dataset`` (the ``hf`` extra) over the same
        Arrow memory; its ``info`` carries the licence, the description and the provenance.

        ``streaming``: a ``datasets.IterableDataset`` instead, whose every pass reads the shards
        again, verified, while this source is open (the rows are never all in memory)."""
        datasets = require("datasets", extra="hf", what="to_hf()")
        m, p = self.manifest.statement, self.provenance
        info = datasets.DatasetInfo(
            dataset_name=p.dataset,
            version=f"{p.version}.0.0",
            license=p.license,
            description=f"{m.description or m.dataset}\n\n{p.dataset} version {p.version}, "
            f"manifest sha256:{p.manifest_digest}, read under grant {p.grant_id}. "
            f"Terms: {m.terms}",
        )
        if not streaming:
            table = require("datasets.table", extra="hf", what="to_hf()")
            return datasets.Dataset(table.InMemoryTable(self.to_table(columns=columns)), info=info)
        cols = self._check_columns(columns)  # a column the grant does not cover: refused now
        features = datasets.Features.from_arrow_schema(self._projected_schema(cols))
        iterable = datasets.IterableDataset.from_generator(_Rows(self, cols), features=features)
        iterable.info.update(info)
        return iterable

    def export(
        self: _Tabular,
        directory: Path | str,
        *,
        format: ExportFormat = "parquet",
        columns: Sequence[str] | None = None,
        on_file: Callable[[ExportedFile], None] | None = None,
    ) -> ExportResult:
        """Write the version to ``directory`` (new or empty) as one file per shard in manifest
        order, and ``export.json`` (see the module doc); ``on_file`` is called after each file.
        Refuses a directory that holds anything (:class:`ConflictError`)."""
        if format not in EXTENSIONS:
            raise MalformedError(f"unknown export format {format!r} (parquet or arrow)")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        if any(out.iterdir()):
            raise ConflictError(f"{out} is not empty", hint="export into a new or empty directory")
        files = []
        stream = self.read_shards(range(len(self.shard_rows)), columns=columns)
        for shard, batches in _by_shard(stream):
            table = pa.Table.from_batches(batches)
            name = f"part-{shard:05d}{EXTENSIONS[format]}"
            written = _write(out / name, table, format)
            files.append(ExportedFile(name=name, shard=shard, rows=table.num_rows, **written))
            if on_file is not None:
                on_file(files[-1])
        result = ExportResult(
            directory=out,
            format=format,
            columns=list(self.schema.names) if columns is None else list(columns),
            provenance=self.provenance,
            files=files,
        )
        text = json.dumps(result.to_json_obj(), indent=2, sort_keys=True) + "\n"
        (out / SUMMARY_FILE).write_text(text)
        return result


class _Rows:
    """The generator of ``to_hf(streaming=True)``: every row of ``source``, verified, per pass.

    ``datasets`` pickles a generator to fingerprint it; a streamed source cannot be pickled (it
    holds a client and its key), so this pickles as what it reads: manifest, grant, columns."""

    def __init__(self, source: _Tabular, columns: list[str] | None) -> None:
        self.source = source
        self.columns = columns

    def __call__(self) -> Iterator[dict[str, Any]]:
        order = range(len(self.source.shard_rows))
        for _, batch in self.source.read_shards(order, columns=self.columns):
            yield from batch.to_pylist()

    def __reduce__(self) -> tuple[Any, ...]:
        p = self.source.provenance
        return (_not_here, (p.dataset, p.version, p.manifest_digest, p.grant_id, self.columns))


def _not_here(dataset: str, version: int, *_identity: object) -> None:
    raise MalformedError(
        f"a streaming to_hf() of {dataset}@{version} cannot move to another process",
        hint="open the dataset in that process and call to_hf(streaming=True) there",
    )


def _by_shard(
    stream: Iterator[tuple[int, pa.RecordBatch]],
) -> Iterator[tuple[int, list[pa.RecordBatch]]]:
    """``(shard, its batches)`` from a stream of ``(shard, batch)`` (one shard in memory)."""
    for shard, group in itertools.groupby(stream, key=lambda item: item[0]):
        yield shard, [batch for _, batch in group]


def _write(path: Path, table: pa.Table, format: str) -> dict[str, Any]:
    """Write ``table`` to ``path`` (via a temporary name); its size and sha256."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if format == "parquet":
            import pyarrow.parquet as pq  # noqa: PLC0415 - only when exporting Parquet

            pq.write_table(table, tmp, compression="zstd")
        else:
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
                w.write_table(table)
        with tmp.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256")
        size = tmp.stat().st_size
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"bytes": size, "sha256": digest.hexdigest()}
