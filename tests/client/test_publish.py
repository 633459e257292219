"""Publishing from every input format, read back byte for byte through a real registry;
schema unification and conflicts; shard format; resuming an interrupted publish."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from ostraca.client.api import RegistryClient
from ostraca.client.config import load_config
from ostraca.client.publishing import PublishResult, publish
from ostraca.client.shards import ShardWriter
from ostraca.protocol_spec import (
    DatasetManifest,
    MalformedError,
    NotFoundError,
    SigningKey,
)
from ostraca.protocol_spec.errors import UnavailableError

from .client_helpers import TERMS, Identity, read_back, sample_table

PublishFn = Callable[..., PublishResult]
SMALL = {"shard_bytes": 96 * 1024, "chunk_bytes": 65536}


def _write(table: pa.Table, path: Path, fmt: str) -> Path:
    if fmt == "parquet":
        pq.write_table(table, path, row_group_size=700)
    elif fmt == "csv":
        pa_csv.write_csv(table, path)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in table.to_pylist()))
    elif fmt == "arrow-file":
        with pa.ipc.new_file(path, table.schema) as w:
            w.write_table(table, max_chunksize=900)
    elif fmt == "arrow-stream":
        with pa.ipc.new_stream(path, table.schema) as w:
            w.write_table(table, max_chunksize=900)
    else:
        raise AssertionError(fmt)
    return path


SUFFIX = {
    "parquet": ".parquet",
    "csv": ".csv",
    "jsonl": ".jsonl",
    "arrow-file": ".arrow",
    "arrow-stream": ".arrows",
}


@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_publish_file_formats_round_trip(
    fmt: str, tmp_path: Path, publisher: Identity, publish_table: PublishFn
) -> None:
    table = sample_table(6000)
    path = _write(table, tmp_path / f"data{SUFFIX[fmt]}", fmt)
    result = publish_table(str(path), **SMALL)
    assert result.version == 1
    assert result.total_rows == 6000
    assert len(result.shards) >= 2
    assert result.blobs_uploaded == 2 * len(result.shards)
    back = read_back(publisher.client, result)
    assert back.column_names == ["id", "text", "score"]
    assert back.to_pylist() == table.to_pylist()


def test_publish_directory_table_and_batch_iterator(
    tmp_path: Path, publisher: Identity, publish_table: PublishFn
) -> None:
    parts = [sample_table(1500, seed=i) for i in range(3)]
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    _write(parts[0], folder / "a.parquet", "parquet")
    _write(parts[1], folder / "b.csv", "csv")
    _write(parts[2], folder / "sub" / "c.arrow", "arrow-file")
    (folder / "README.txt").write_text("not data")
    (folder / ".hidden.csv").write_text("x\n1\n")
    from_dir = publish_table(str(folder), dataset="acme/dir", **SMALL)
    expected = pa.concat_tables(parts)
    assert read_back(publisher.client, from_dir).to_pylist() == expected.to_pylist()

    from_table = publish_table(expected, dataset="acme/table", **SMALL)
    assert read_back(publisher.client, from_table).equals(expected)

    def batches() -> Iterator[pa.RecordBatch]:
        yield from expected.to_batches(max_chunksize=37)  # many tiny batches get re-batched

    from_iter = publish_table(batches(), dataset="acme/iter", **SMALL)
    back = read_back(publisher.client, from_iter)
    assert back.equals(expected)
    assert max(b.num_rows for b in back.to_batches()) > 37  # re-batched, not one batch per input


def test_schemas_are_unified_with_safe_promotions(
    tmp_path: Path, publisher: Identity, publish_table: PublishFn
) -> None:
    a = pa.table({"id": pa.array([1, 2], pa.int32()), "v": pa.array([None, None], pa.null())})
    b = pa.table({"v": pa.array(["x", None]), "id": pa.array([3, 2**40], pa.int64())})
    pq.write_table(a, tmp_path / "a.parquet")
    pq.write_table(b, tmp_path / "b.parquet")
    result = publish_table([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    back = read_back(publisher.client, result)
    assert back.schema.field("id").type == pa.int64()
    assert back.schema.field("v").type == pa.string()
    assert back.column_names == ["id", "v"]
    assert back.to_pylist() == [
        {"id": 1, "v": None},
        {"id": 2, "v": None},
        {"id": 3, "v": "x"},
        {"id": 2**40, "v": None},
    ]


def test_schema_conflict_is_refused_with_a_per_column_diff(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1], "text": ["a"]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": ["one"], "text": ["b"], "extra": [1.5]}), tmp_path / "b.parquet")
    # No registry is needed to refuse: the check comes before any network call.
    client = RegistryClient(load_config(home=tmp_path / "home", registry="http://127.0.0.1:9"))
    with client, pytest.raises(MalformedError) as info:
        publish(
            client,
            [tmp_path / "a.parquet", tmp_path / "b.parquet"],
            dataset="acme/x",
            license="MIT",
            terms=TERMS,
            key=SigningKey.generate(),
            progress=False,
        )
    message = info.value.message
    assert "column 'extra': in " in message
    assert "b.parquet, missing in" in message
    # Once the column sets agree, the type clash is named per column and per file.
    pq.write_table(pa.table({"id": ["one"], "text": ["b"]}), tmp_path / "b.parquet")
    with client, pytest.raises(MalformedError) as info:
        publish(
            client,
            [tmp_path / "a.parquet", tmp_path / "b.parquet"],
            dataset="acme/x",
            license="MIT",
            terms=TERMS,
            key=SigningKey.generate(),
            progress=False,
        )
    assert "column 'id': int64 in " in info.value.message
    assert "string in " in info.value.message
    assert "'text'" not in info.value.message
    assert "\n" not in info.value.message


@pytest.mark.parametrize(
    ("sources", "error", "expected"),
    [
        pytest.param([], MalformedError, "no inputs", id="nothing"),
        pytest.param(iter([]), MalformedError, "no record batches", id="empty-iterator"),
        pytest.param("missing.parquet", NotFoundError, "no such file", id="missing-file"),
        pytest.param(
            pa.table({"a": pa.array([], pa.int64())}), MalformedError, "no rows", id="empty-table"
        ),
        pytest.param(42, MalformedError, "cannot publish a int", id="not-data"),
    ],
)
def test_bad_inputs_are_refused(
    sources: object, error: type[Exception], expected: str, publisher: Identity
) -> None:
    with pytest.raises(error) as info:
        publish(
            publisher.client,
            sources,
            dataset="acme/x",
            license="MIT",
            terms=TERMS,
            progress=False,
        )
    assert expected in str(info.value)


def test_bad_options_are_refused_before_encoding(publisher: Identity) -> None:
    table = sample_table(10)
    with pytest.raises(MalformedError, match="SPDX"):
        publish(publisher.client, table, dataset="acme/x", license="not a licence", terms=TERMS)
    with pytest.raises(MalformedError, match="power of two"):
        publish(
            publisher.client, table, dataset="acme/x", license="MIT", terms=TERMS, chunk_bytes=3
        )
    with pytest.raises(MalformedError, match="invalid dataset name"):
        publish(publisher.client, table, dataset="Acme", license="MIT", terms=TERMS)


def test_shard_writer_makes_streams_of_megabyte_batches(tmp_path: Path) -> None:
    rng = __import__("random").Random(0)
    rows = 40_000
    table = pa.table(
        {"id": pa.array(range(rows), pa.int64()), "blob": [rng.randbytes(300) for _ in range(rows)]}
    )
    writer = ShardWriter(
        tmp_path, table.schema, shard_bytes=8 * 1024 * 1024, compression="zstd", chunk_bytes=65536
    )
    for batch in table.to_batches(max_chunksize=5000):
        writer.write(batch)
    shards = writer.close()
    assert len(shards) == 2  # ~12.3 MB of incompressible bytes in 8 MiB shards
    assert all(s.bytes <= 8 * 1024 * 1024 for s in shards)
    for s in shards:
        reader = pa.ipc.open_stream(s.path.read_bytes())
        sizes = [b.nbytes for b in reader]
        # Batches of about 2 MiB (on disk ≈ in memory here: random bytes do not compress).
        assert all(1024**2 <= n <= 4 * 1024**2 for n in sizes[:-1]), sizes
        assert len(sizes) >= 2
    combined = pa.Table.from_batches(
        [b for s in shards for b in pa.ipc.open_stream(s.path.read_bytes())]
    )
    assert combined.equals(table)


def test_compression_options(publisher: Identity, publish_table: PublishFn) -> None:
    table = sample_table(3000)
    sizes = {}
    for n, compression in enumerate(("none", "lz4", "zstd")):
        result = publish_table(table, dataset=f"acme/c{n}", compression=compression, **SMALL)
        assert read_back(publisher.client, result).equals(table)
        sizes[compression] = result.total_bytes
    assert sizes["zstd"] < sizes["none"]
    assert sizes["lz4"] < sizes["none"]


def test_versions_chain_and_identical_blobs_are_not_uploaded_again(
    publisher: Identity, publish_table: PublishFn
) -> None:
    table = sample_table(4000)
    # Plaintext (public data): an encrypted version has fresh data keys, so other blobs.
    v1 = publish_table(table, encrypt=False, **SMALL)
    v2 = publish_table(table, encrypt=False, **SMALL)  # in memory: the same shards again
    assert (v1.version, v2.version) == (1, 2)
    assert v2.blobs_uploaded == 0
    assert v2.bytes_uploaded == 0
    assert v2.blobs_skipped == 2 * len(v1.shards)
    env = publisher.client.get_manifest_envelope("acme/books", 2)
    manifest = DatasetManifest.from_json_obj(json.loads(env.payload))
    assert manifest.previous == v1.digest
    assert env.digest == v2.digest


class _Wire(httpx.BaseTransport):
    """The real network transport, observed: counts bytes sent in upload PATCHes, and can drop
    the connection after the registry has taken the ``drop_at``-th PATCH (answer lost)."""

    def __init__(self, drop_at: int | None = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.drop_at = drop_at
        self.patches = 0
        self.patch_bytes = 0
        self.requests: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.requests.append((request.method, request.url.path))
        if request.method == "PATCH":
            self.patches += 1
            self.patch_bytes += len(request.content)
            if self.patches == self.drop_at:
                response.read()
                response.close()
                raise httpx.RemoteProtocolError("connection dropped", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_interrupted_publish_resumes_without_sending_anything_twice(
    tmp_path: Path, publisher: Identity, registry_server: object
) -> None:
    table = sample_table(8000, text_bytes=400)
    source = _write(table, tmp_path / "data.parquet", "parquet")
    options = {
        "dataset": "acme/books",
        "license": "CC-BY-4.0",
        "terms": TERMS,
        "progress": False,
        "shard_bytes": 256 * 1024,
        "chunk_bytes": 65536,
        "compression": "none",
        "upload_piece_bytes": 48 * 1024,
    }
    first = _Wire(drop_at=7)
    with (
        RegistryClient(publisher.config, transport=first) as client,
        pytest.raises(UnavailableError, match="connection dropped"),
    ):
        publish(client, str(source), **options)  # type: ignore[arg-type]
    assert first.patches == 7
    staged = sorted(
        p.name for p in next((publisher.home / "staging").rglob("plan.json")).parent.iterdir()
    )
    assert any(n.endswith(".arrows") for n in staged)
    mtimes = {p: p.stat().st_mtime_ns for p in (publisher.home / "staging").rglob("shard-*")}

    second = _Wire()
    with RegistryClient(publisher.config, transport=second) as client:
        result = publish(client, str(source), **options)  # type: ignore[arg-type]
    assert result.encoded is False  # the staged shards were reused, not re-encoded
    assert not any(p.exists() and p.stat().st_mtime_ns != t for p, t in mtimes.items())
    # The cut-off session was resumed from the registry's offset (GET /v1/uploads/{id}).
    assert any(m == "GET" and p.startswith("/v1/uploads/") for m, p in second.requests)
    blob_sizes = {s.sha256: s.bytes for s in result.shards}
    data_dir: Path = registry_server.data_dir  # type: ignore[attr-defined]
    stored = {p.name: p.stat().st_size for p in (data_dir / "blobs" / "sha256").iterdir()}
    for shard in result.shards:
        assert stored[shard.sha256] == shard.bytes
        assert shard.chunks in stored
    assert len(stored) == 2 * len(result.shards)
    total = sum(blob_sizes.values()) + sum(stored[s.chunks] for s in result.shards)
    # Every byte of every blob crossed the wire exactly once over both runs.
    assert first.patch_bytes + second.patch_bytes == total
    assert read_back(publisher.client, result).to_pylist() == table.to_pylist()
    publish_events = [e for e in publisher.client.audit("acme/books") if e.action == "publish"]
    assert len(publish_events) == 1

    third = _Wire()
    with RegistryClient(publisher.config, transport=third) as client:
        again = publish(client, str(source), **options)  # type: ignore[arg-type]
    assert again.already_published
    assert (again.version, again.digest) == (result.version, result.digest)
    assert third.patches == 0
    assert not any(m == "POST" for m, _ in third.requests)
