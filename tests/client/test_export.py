"""Data out of a verified version, streamed and pulled: ``to_pandas``, ``to_polars``, ``to_hf``,
and ``export`` to Parquet and Arrow IPC files that DuckDB, polars and pyarrow read directly; a
missing optional dependency names its extra (checked in a child process whose import of it is
blocked, as a lean install would fail)."""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ostraca.client import PublishResult
from ostraca.client.export import SUMMARY_FILE, ExportResult
from ostraca.client.local import open_pulled
from ostraca.client.pull import pull
from ostraca.client.stream import open_dataset
from ostraca.protocol_spec import ConflictError, MalformedError

from .stream_helpers import IdentityLike, grant_access

DATASET = "acme/books"
CHUNK = 64 * 1024


def _table(rows: int = 3000) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "text": [hashlib.sha256(str(i).encode()).hexdigest() * 2 for i in range(rows)],
            "score": pa.array([i / 8 for i in range(rows)], pa.float64()),
        }
    )


@pytest.fixture
def published(
    publish_table: Callable[..., PublishResult],
    publisher: IdentityLike,
    researcher: IdentityLike,
) -> tuple[PublishResult, pa.Table]:
    """``acme/books`` v1 in several shards, granted to the researcher."""
    table = _table()
    result = publish_table(
        table,
        dataset=DATASET,
        shard_bytes=2 * CHUNK,
        chunk_bytes=CHUNK,
        compression="none",
    )
    assert len(result.shards) >= 3
    grant_access(publisher.client, researcher.client, DATASET)
    return result, table


def _check_export(result: ExportResult, published: PublishResult, table: pa.Table) -> None:
    """The files are one per shard in manifest order, as ``export.json`` lists them, and each
    reader gets the rows back in order."""
    out = result.directory
    ext = ".parquet" if result.format == "parquet" else ".arrow"
    names = [f"part-{i:05d}{ext}" for i in range(len(published.shards))]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, SUMMARY_FILE])
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary == json.loads(json.dumps(result.to_json_obj()))
    assert summary["manifest_digest"] == published.digest
    assert [f["name"] for f in summary["files"]] == names
    assert [f["rows"] for f in summary["files"]] == [s.rows for s in published.shards]
    for f in summary["files"]:
        assert hashlib.sha256((out / f["name"]).read_bytes()).hexdigest() == f["sha256"]
    want = table.select(summary["columns"])
    if result.format == "parquet":
        glob = str(out / "*.parquet")
        by_pyarrow = pa.concat_tables(pq.read_table(out / n) for n in names)
        by_polars = pl.scan_parquet(glob).collect()
        query = f"SELECT * FROM read_parquet('{glob}', filename = true) ORDER BY filename, id"
        relation = duckdb.sql(query)
        assert relation is not None
        assert relation.to_arrow_table().drop_columns(["filename"]).equals(want)
    else:
        by_pyarrow = pa.concat_tables(pa.ipc.open_file(out / n).read_all() for n in names)
        by_polars = pl.scan_ipc(str(out / "*.arrow")).collect()
    assert by_pyarrow.equals(want)
    assert by_polars.to_arrow().cast(want.schema).equals(want)


def test_streamed_version_to_every_tool(
    published: tuple[PublishResult, pa.Table], researcher: IdentityLike, tmp_path: Path
) -> None:
    result, table = published
    with open_dataset(DATASET, client=researcher.client) as ds:
        frame = ds.to_pandas()
        assert isinstance(frame, pd.DataFrame)
        pd.testing.assert_frame_equal(frame, table.to_pandas())
        polars_frame = ds.to_polars(columns=["id", "text"])
        assert isinstance(polars_frame, pl.DataFrame)
        assert (
            polars_frame.to_arrow()
            .cast(table.select(["id", "text"]).schema)
            .equals(table.select(["id", "text"]))
        )
        hf = ds.to_hf(columns=["text", "id"])
        assert hf.num_rows == table.num_rows
        assert hf.column_names == ["text", "id"]
        assert hf[5] == {"text": table["text"][5].as_py(), "id": 5}
        assert hf.info.license == "CC-BY-4.0"
        assert result.digest in hf.info.description
        rows = ds.to_hf(columns=["id"], streaming=True)
        assert rows.info.license == "CC-BY-4.0"
        for _ in range(2):  # each pass reads the shards again, verified
            assert [r["id"] for r in rows] == table["id"].to_pylist()
        with pytest.raises(MalformedError, match="another process"):  # its source stays here
            pickle.loads(pickle.dumps(rows))
        with pytest.raises(MalformedError, match="no column"):
            ds.to_hf(columns=["nope"], streaming=True)
        exported = ds.export(tmp_path / "parquet")
        _check_export(exported, result, table)
        on_file: list[str] = []
        arrow = ds.export(
            tmp_path / "arrow",
            format="arrow",
            columns=["id", "score"],
            on_file=lambda f: on_file.append(f.name),
        )
        assert on_file == [f.name for f in arrow.files]
        assert arrow.columns == ["id", "score"]
        _check_export(arrow, result, table)
        with pytest.raises(ConflictError, match="not empty"):
            ds.export(tmp_path / "arrow", format="arrow")
        with pytest.raises(MalformedError, match="no column"):
            ds.export(tmp_path / "x", columns=["x"])


def test_pulled_copy_to_every_tool(
    published: tuple[PublishResult, pa.Table], researcher: IdentityLike, tmp_path: Path
) -> None:
    result, table = published
    pull(DATASET, tmp_path / "copy", client=researcher.client)
    with open_pulled(tmp_path / "copy", home=researcher.home) as copy:
        pd.testing.assert_frame_equal(copy.to_pandas(), table.to_pandas())
        assert copy.to_polars().to_arrow().cast(table.schema).equals(table)
        assert copy.to_hf().data.table.equals(table)
        streamed = list(copy.to_hf(streaming=True).iter(batch_size=1000))
        assert [len(b["id"]) for b in streamed] == [1000, 1000, 1000]
        assert streamed[2]["text"] == table["text"].to_pylist()[2000:]
        _check_export(copy.export(tmp_path / "out", format="arrow"), result, table)
        _check_export(copy.export(tmp_path / "pq", format="parquet"), result, table)


_BLOCKED = """
import sys
from pathlib import Path
for name in sys.argv[3:]:
    sys.modules[name] = None  # what `import name` meets when it is not installed
from ostraca.client.export import MissingDependencyError
from ostraca.client.local import open_pulled
copy = open_pulled(sys.argv[1], home=Path(sys.argv[2]))
for call in (copy.to_pandas, copy.to_polars, copy.to_hf):
    try:
        call()
    except MissingDependencyError as exc:
        print(exc.code, exc)
    else:
        print("ok", call.__name__)
"""


def test_a_missing_extra_is_named(
    published: tuple[PublishResult, pa.Table], researcher: IdentityLike, tmp_path: Path
) -> None:
    pull(DATASET, tmp_path / "copy", client=researcher.client)
    args = [str(tmp_path / "copy"), str(researcher.home)]
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCKED, *args, "pandas", "polars", "datasets"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "missing_extra to_pandas() needs pandas, which is not installed "
        "(pip install 'ostraca[pandas]')",
        "missing_extra to_polars() needs polars, which is not installed "
        "(pip install 'ostraca[polars]')",
        "missing_extra to_hf() needs datasets, which is not installed (pip install 'ostraca[hf]')",
    ]
    only_hf = subprocess.run(
        [sys.executable, "-c", _BLOCKED, *args, "datasets"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert only_hf.stdout.splitlines()[:2] == ["ok to_pandas", "ok to_polars"]
