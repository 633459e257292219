"""Reading a publish's inputs: formats sniffed from content, malformed inputs as a
MalformedError naming the file, Hive partitions kept, CSV nulls as documented in ingest.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ostraca.client.ingest import batch_bytes, open_inputs, sniff, wrap_arrow_errors
from ostraca.protocol_spec import MalformedError

TABLE = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "text": ["a", "b", None]})


def _read(source: Path) -> pa.Table:
    inputs = open_inputs(source)
    return pa.Table.from_batches([b for i in inputs for b in i.batches()], schema=inputs[0].schema)


def _ipc_file(path: Path, table: pa.Table = TABLE) -> Path:
    with pa.ipc.new_file(path, table.schema) as w:
        w.write_table(table)
    return path


def _ipc_stream(path: Path, table: pa.Table = TABLE) -> Path:
    with pa.ipc.new_stream(path, table.schema) as w:
        w.write_table(table)
    return path


def _parquet(path: Path) -> Path:
    pq.write_table(TABLE, path)
    return path


@pytest.mark.parametrize(
    ("name", "write", "fmt"),
    [
        ("data.arrow_file", _ipc_file, "ipc_file"),
        ("no_extension", _ipc_file, "ipc_file"),
        ("stream_without_extension", _ipc_stream, "ipc_stream"),
        ("table.bin", _parquet, "parquet"),
    ],
)
def test_the_format_is_sniffed_from_content(
    tmp_path: Path, name: str, write: Callable[[Path], Path], fmt: str
) -> None:
    path = write(tmp_path / name)
    assert sniff(path) == fmt
    assert _read(path).equals(TABLE)


def test_a_directory_reads_files_by_magic_and_leaves_other_files_out(tmp_path: Path) -> None:
    _ipc_file(tmp_path / "part-0")
    _ipc_stream(tmp_path / "part-1.arrows")
    (tmp_path / "README").write_text("not data\n")
    assert len(_read(tmp_path)) == 2 * len(TABLE)


def test_jsonl_by_content(tmp_path: Path) -> None:
    path = tmp_path / "rows"
    path.write_text('{"id": 1}\n{"id": 2}\n')
    assert _read(path).column("id").to_pylist() == [1, 2]


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"ARROW1\x00\x00garbage", "ipc file"),
        (b"\xff\xff\xff\xff\x10\x00\x00\x00garbage-garbage!", "ipc stream"),
        (b"PAR1 not really", "parquet"),
    ],
)
def test_malformed_files_are_malformed_errors_naming_the_file(
    tmp_path: Path, content: bytes, what: str
) -> None:
    path = tmp_path / "broken"
    path.write_bytes(content)
    with pytest.raises(MalformedError, match=f"cannot read {path} \\({what}\\)"):
        open_inputs(path)


def test_a_truncated_ipc_file_fails_as_malformed_while_reading(tmp_path: Path) -> None:
    big = pa.table({"x": list(range(100_000))})
    path = _ipc_stream(tmp_path / "cut.arrows", big)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    (inp,) = open_inputs(path)
    with pytest.raises(MalformedError, match=str(path)):
        list(wrap_arrow_errors(inp.label, inp.batches()))


def test_unknown_content_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(MalformedError, match="cannot tell the format") as info:
        open_inputs(path)
    assert ".parquet" in str(info.value.hint)


def test_duplicate_column_names_are_malformed(tmp_path: Path) -> None:
    dup = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    with pytest.raises(MalformedError, match="duplicate column names: 'a'"):
        open_inputs(dup)
    path = _ipc_file(tmp_path / "dup.arrow", dup)
    with pytest.raises(MalformedError, match=f"{path} has duplicate column names"):
        open_inputs(path)


def test_hive_partitions_are_kept(tmp_path: Path) -> None:
    for year, city in (
        (2023, "Paris"),
        (2024, "S%C3%A3o Paulo"),
        (2024, "__HIVE_DEFAULT_PARTITION__"),
    ):
        folder = tmp_path / f"year={year}" / f"city={city}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"v": [year]}), folder / "part.parquet")
    table = _read(tmp_path)
    assert table.schema.field("year").type == pa.int32()
    assert table.schema.field("city").type == pa.string()
    rows = sorted(table.to_pylist(), key=lambda r: (r["year"], r["city"] or ""))
    assert rows == [
        {"v": 2023, "year": 2023, "city": "Paris"},
        {"v": 2024, "year": 2024, "city": None},
        {"v": 2024, "year": 2024, "city": "São Paulo"},
    ]


def test_hive_folders_must_agree_on_their_keys(tmp_path: Path) -> None:
    for sub in ("year=2023", "other"):
        (tmp_path / sub).mkdir()
        pq.write_table(TABLE, tmp_path / sub / "p.parquet")
    with pytest.raises(MalformedError, match="different partition keys"):
        open_inputs(tmp_path)


def test_csv_nulls(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('n,s,f\n1,a,1.5\n,,\n3,"",NA\n')
    table = _read(path)
    assert table.column("n").to_pylist() == [1, None, 3]
    assert table.column("s").to_pylist() == ["a", None, ""]  # empty → null, "" → empty string
    assert table.schema.field("f").type == pa.string()  # NA is text, not a null spelling
    assert table.column("f").to_pylist() == ["1.5", None, "NA"]


def test_batch_bytes_counts_union_columns(tmp_path: Path) -> None:
    dense = pa.UnionArray.from_dense(
        pa.array([0, 1, 0], pa.int8()), pa.array([0, 0, 1], pa.int32()),
        [pa.array([1, 2]), pa.array(["x"])],
    )  # fmt: skip
    sparse = pa.UnionArray.from_sparse(
        pa.array([0, 1, 1], pa.int8()), [pa.array([1, 2, 3]), pa.array(["a", "b", "c"])]
    )
    batch = pa.record_batch([dense, sparse], names=["dense", "sparse"])
    assert batch_bytes(batch) > 0
    assert batch_bytes(batch.slice(1)) > 0
