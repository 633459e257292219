"""The interop corpus: a file for every Arrow type pyarrow can write (and files written by
polars), each published to a real registry and streamed back verified. Each must come back
equal, or be refused with a MalformedError that names the file — never crash.

The publishing runs in a worker process (this module run with ``python -m``), so that a crash
of the Arrow library is a failed case, not a dead test run: the worker reports each case as a
JSON line when it starts and when it ends; when it dies, the case it was in is reported as
crashed and a new worker goes on with the rest.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
N = 7


def _arrays() -> dict[str, pa.Array]:
    """One array per Arrow type (a null in every one that can hold one)."""
    ints = [1, None, 3, 4, 5, 6, 7]
    strs = ["a", None, "ccc", "", "ééé", "f" * 40, "g"]
    raw = [s.encode() if s else None for s in strs]
    floats = [1.5, None, float("nan"), 0, -1, 1e300, 4]
    dec = [Decimal("1.250"), None] + [Decimal("-3.5")] * 5
    arrays: dict[str, pa.Array] = {
        "null": pa.nulls(N),
        "bool": pa.array([True, None] * 3 + [False]),
    }
    for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
        arrays[t] = pa.array(ints, getattr(pa, t)())
    arrays |= {
        "float16": pa.array(floats[:2] + [2.5] * 5, pa.float32()).cast(pa.float16()),
        "float32": pa.array(floats, pa.float32()),
        "float64": pa.array(floats),
        "decimal128": pa.array(dec, pa.decimal128(10, 3)),
        "decimal256": pa.array([Decimal("1" * 40), *dec[1:]], pa.decimal256(45, 3)),
        "string": pa.array(strs),
        "large_string": pa.array(strs, pa.large_string()),
        "string_view": pa.array(strs, pa.string_view()),
        "binary": pa.array(raw),
        "large_binary": pa.array(raw, pa.large_binary()),
        "binary_view": pa.array(raw, pa.binary_view()),
        "fixed_size_binary": pa.array([b"abcd", None] + [b"wxyz"] * 5, pa.binary(4)),
        "date32": pa.array([dt.date(2024, 1, i + 1) for i in range(N)], pa.date32()),
        "date64": pa.array([dt.date(2024, 2, i + 1) for i in range(N)], pa.date64()),
        "time32": pa.array(ints, pa.time32("s")),
        "time64": pa.array(ints, pa.time64("ns")),
        "timestamp_tz": pa.array(ints, pa.timestamp("us", tz="Europe/Paris")),
        "timestamp_ns": pa.array(ints, pa.timestamp("ns")),
        "duration": pa.array(ints, pa.duration("ms")),
        "interval": pa.array(
            [pa.MonthDayNano([1, 2, 3]), None] + [pa.MonthDayNano([0, 0, 1])] * 5,
            pa.month_day_nano_interval(),
        ),
    }
    return arrays | _nested_arrays(ints, strs)


def _nested_arrays(ints: list[int | None], strs: list[str | None]) -> dict[str, pa.Array]:
    lists = [[1], None, [2, 3], [], [4], [5, None], [6]]
    tensor = pa.fixed_shape_tensor(pa.int32(), [2, 2])
    return {
        "list": pa.array(lists, pa.list_(pa.int32())),
        "large_list": pa.array([[s] if s else [] for s in strs], pa.large_list(pa.string())),
        "fixed_size_list": pa.array(
            [[1.0, 2.0, 3.0], None] + [[0.0] * 3] * 5, pa.list_(pa.float32(), 3)
        ),
        "list_view": pa.array(lists, pa.list_view(pa.int64())),
        "large_list_view": pa.array(lists, pa.large_list_view(pa.int8())),
        "struct": pa.array(
            [{"x": 1, "y": "a"}, None] + [{"x": None, "y": "b"}] * 5,
            pa.struct([("x", pa.int64()), ("y", pa.string())]),
        ),
        "map": pa.array(
            [[("k", 1)], None, [], [("a", 2), ("b", 3)], [], [], []],
            pa.map_(pa.string(), pa.int64()),
        ),
        "dictionary": pa.array(strs).dictionary_encode(),
        "dictionary_ordered": pa.DictionaryArray.from_arrays(
            pa.array([0, 1, None, 1, 0, 0, 1], pa.int8()), pa.array(["lo", "hi"]), ordered=True
        ),
        "run_end_encoded": pa.RunEndEncodedArray.from_arrays(
            pa.array([2, 5, 7], pa.int32()), pa.array(["x", None, "y"])
        ),
        "dense_union": pa.UnionArray.from_dense(
            pa.array([0, 1, 0, 1, 0, 0, 1], pa.int8()),
            pa.array([0, 0, 1, 1, 2, 3, 2], pa.int32()),
            [pa.array([1, None, 3, 4]), pa.array(["a", "b", None])],
        ),
        "sparse_union": pa.UnionArray.from_sparse(
            pa.array([0, 1, 0, 1, 0, 0, 1], pa.int8()), [pa.array(ints), pa.array(strs)]
        ),
        "uuid": pa.ExtensionArray.from_storage(
            pa.uuid(), pa.array([bytes(range(16))] * N, pa.binary(16))
        ),
        "fixed_shape_tensor": pa.ExtensionArray.from_storage(
            tensor, pa.array([[1, 2, 3, 4]] * N, pa.list_(pa.int32(), 4))
        ),
        "nested_nulls": pa.array(
            [[{"a": None}], [None], None, [], [{"a": 1}], None, []],
            pa.list_(pa.struct([("a", pa.int8())])),
        ),
    }


def _tables() -> dict[str, pa.Table]:
    arrays = _arrays()
    tables = {name: pa.table({"id": range(N), "value": arr}) for name, arr in arrays.items()}
    tables["all_types_together"] = pa.table({"id": range(N), **arrays})
    tables["empty"] = pa.table({"id": pa.array([], pa.int64()), "s": pa.array([], pa.string())})
    return tables


def _write_ipc_file(table: pa.Table, path: Path) -> Path:
    path = path.with_suffix(".arrow_file")
    with pa.ipc.new_file(path, table.schema) as w:
        if table.num_rows:  # several batches, one of them empty
            first = table.slice(0, 3).combine_chunks().to_batches()[0]
            w.write_batch(first)
            w.write_batch(first.slice(0, 0))
            w.write_table(table.slice(3))
    return path


def _polars_cases() -> dict[str, Callable[[Path], Path]]:
    import polars as pl  # noqa: PLC0415 - a dev dependency, only for these cases

    when = [dt.datetime(2024, 1, 1), None, dt.datetime(2024, 6, 1)]
    frame = pl.DataFrame(
        {
            "id": [1, 2, None],
            "text": ["a", None, "ccc"],
            "cat": pl.Series(["x", "y", "x"], dtype=pl.Categorical),
            "enum": pl.Series(["lo", "hi", None], dtype=pl.Enum(["lo", "hi"])),
            "dec": pl.Series([Decimal("1.50"), None, Decimal("2.25")], dtype=pl.Decimal(10, 2)),
            "when": pl.Series(when).dt.replace_time_zone("UTC"),
            "took": pl.Series([dt.timedelta(seconds=1), None, dt.timedelta(days=2)]),
            "at": pl.Series([dt.time(1, 2), None, dt.time(23, 59)]),
            "bin": pl.Series([b"\x00", None, b"xyz"]),
            "lists": pl.Series([[1, 2], None, []], dtype=pl.List(pl.Int16)),
            "arr": pl.Series([[1, 2], [3, 4], None], dtype=pl.Array(pl.Int64, 2)),
            "rec": pl.Series([{"a": 1, "b": "x"}, None, {"a": None, "b": "y"}]),
        }
    )

    def ipc(path: Path) -> Path:
        frame.write_ipc(path.with_suffix(""), compression="uncompressed")
        return path.with_suffix("")

    def ipc_zstd(path: Path) -> Path:
        frame.write_ipc(path.with_suffix(".arrow"), compression="zstd")
        return path.with_suffix(".arrow")

    def ipc_stream(path: Path) -> Path:
        frame.write_ipc_stream(path.with_suffix(".arrows"))
        return path.with_suffix(".arrows")

    def parquet(path: Path) -> Path:
        frame.write_parquet(path.with_suffix(".parquet"))
        return path.with_suffix(".parquet")

    def csv(path: Path) -> Path:
        frame.select("id", "text", "dec").write_csv(path.with_suffix(".csv"))
        return path.with_suffix(".csv")

    def ndjson(path: Path) -> Path:
        frame.select("id", "text", "lists", "rec").write_ndjson(path.with_suffix(".jsonl"))
        return path.with_suffix(".jsonl")

    return {
        "polars_ipc_no_extension": ipc,
        "polars_ipc_zstd": ipc_zstd,
        "polars_ipc_stream": ipc_stream,
        "polars_parquet": parquet,
        "polars_csv": csv,
        "polars_ndjson": ndjson,
    }


def _cases() -> dict[str, Callable[[Path], Path]]:
    tables = _tables()
    cases: dict[str, Callable[[Path], Path]] = {}
    for name, table in tables.items():
        cases[f"ipc_{name}"] = functools.partial(_write_ipc_file, table)
    for name in ("string", "large_list", "struct", "map", "dictionary", "decimal256"):
        cases[f"parquet_{name}"] = functools.partial(_write_parquet, tables[name])
    cases["parquet_timestamp_tz"] = functools.partial(_write_parquet, tables["timestamp_tz"])
    cases["ipc_stream_union"] = functools.partial(_stream, tables["dense_union"])
    cases.update(_polars_cases())
    return cases


def _write_parquet(table: pa.Table, path: Path) -> Path:
    path = path.with_suffix(".pq")
    pq.write_table(table, path)
    return path


def _stream(table: pa.Table, path: Path) -> Path:
    with pa.ipc.new_stream(path, table.schema) as w:
        w.write_table(table)
    return path


CASES = sorted(_cases())


# ── the worker (``python -m tests.client.test_interop REGISTRY PUBLISHER RESEARCHER DIR``) ──


def _run_case(name: str, folder: Path, homes: tuple[Path, Path], registry: str) -> dict[str, Any]:
    from ostraca.client.api import RegistryClient  # noqa: PLC0415 - the worker only
    from ostraca.client.config import load_config  # noqa: PLC0415
    from ostraca.client.ingest import open_inputs  # noqa: PLC0415
    from ostraca.client.publishing import publish  # noqa: PLC0415
    from ostraca.client.stream import open_dataset  # noqa: PLC0415
    from ostraca.protocol_spec import MalformedError, utc_now  # noqa: PLC0415

    path = _cases()[name](folder / name)
    dataset = f"acme/{name.replace('_', '-')}"
    pub = RegistryClient(load_config(home=homes[0], registry=registry))
    res = RegistryClient(load_config(home=homes[1], registry=registry))
    try:
        try:
            inputs = open_inputs(path)
            want = pa.Table.from_batches(
                [b for i in inputs for b in i.batches()], schema=inputs[0].schema
            )
            publish(pub, path, dataset=dataset, license="CC0-1.0", terms="t", progress=False)
        except MalformedError as exc:
            return {"outcome": "malformed", "detail": exc.message, "file": str(path)}
        request = res.request_access(dataset, purpose="interop")
        pub.approve(request.request_id, expires=utc_now() + dt.timedelta(days=1))
        with open_dataset(dataset, client=res) as ds:
            got = ds.to_table()
        differences = _differences(want, got)
        if not differences:
            return {"outcome": "equal"}
        return {"outcome": "different", "detail": "\n".join(differences)}
    finally:
        pub.close()
        res.close()


def _differences(a: pa.Table, b: pa.Table) -> list[str]:
    """The columns of ``a`` and ``b`` that differ, compared as values and else as bits
    (``equals`` says NaN differs from NaN)."""

    def bits(t: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, t.schema) as w:
            w.write_table(t.combine_chunks())
        return bytes(sink.getvalue().to_pybytes())

    if a.schema != b.schema:
        return [f"schema {a.schema} != {b.schema}"]
    return [
        f"{name}: {a[name]} != {b[name]}"
        for name in a.column_names
        if not a[name].equals(b[name]) and bits(a.select([name])) != bits(b.select([name]))
    ]


def _worker(argv: list[str]) -> None:
    registry, publisher, researcher, folder, *names = argv
    for name in names:
        print(json.dumps({"case": name, "started": True}), flush=True)
        try:
            result = _run_case(name, Path(folder), (Path(publisher), Path(researcher)), registry)
        except Exception as exc:  # every failure is reported, the next case goes on
            result = {"outcome": "error", "detail": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({"case": name, **result}), flush=True)


# ── the tests ────────────────────────────────────────────────────────────────────────────────


def _run_all(registry: str, homes: tuple[Path, Path], folder: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    todo = list(CASES)
    while todo:
        argv = [registry, *map(str, homes), str(folder), *todo]
        proc = subprocess.run(
            [sys.executable, "-m", "tests.client.test_interop", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        started = None
        for line in proc.stdout.splitlines():
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if event.pop("started", False):
                started = event["case"]
            else:
                results[event.pop("case")] = event
                started = None
        if started is not None:  # the worker died in this case
            results[started] = {
                "outcome": "crashed",
                "detail": f"exit {proc.returncode}: {proc.stderr[-2000:]}",
            }
        elif proc.returncode != 0:
            pytest.fail(f"the interop worker failed: {proc.stderr[-2000:]}")
        todo = [c for c in CASES if c not in results]
    return results


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    from ..client.client_helpers import make_identity  # noqa: PLC0415
    from ..registry_helpers import running_registry  # noqa: PLC0415

    base = tmp_path_factory.mktemp("interop")
    with running_registry(base / "registry") as reg:
        publisher = make_identity(base, reg.url, "acme-lab", "institution")
        publisher.client.create_namespace("acme")
        researcher = make_identity(base, reg.url, "ada", "researcher")
        (base / "files").mkdir()
        yield _run_all(reg.url, (publisher.home, researcher.home), base / "files")
        publisher.client.close()
        researcher.client.close()


@pytest.mark.parametrize("case", CASES)
def test_interop_case_comes_back_equal_or_is_refused_clearly(
    corpus: dict[str, dict[str, Any]], case: str
) -> None:
    result = corpus[case]
    if case == "ipc_empty":  # no rows at all: nothing to publish
        assert result["outcome"] == "malformed"
        assert "no rows" in result["detail"]
        return
    if result["outcome"] == "malformed":
        assert result["file"] in result["detail"]  # names the file, and says what is wrong
        return
    assert result["outcome"] == "equal", result["detail"]


if __name__ == "__main__":
    _worker(sys.argv[1:])
