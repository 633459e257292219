"""``ostraca croissant`` and ``ostraca export`` against a real registry: the Croissant the CLI
builds from the verified manifest is the registry's, byte for byte, and valid; the export writes
files in manifest order that DuckDB, polars and pyarrow read, from a grant or a pulled copy."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import duckdb
import httpx
import polars as pl
import pyarrow as pa
import pytest

from ostraca.client import PublishResult
from ostraca.client.cards import deprecate_version

from ..client.client_helpers import Identity, sample_table
from ..client.stream_helpers import grant_access
from ..server.test_croissant import croissant_issues
from .test_cli import Cli

CHUNK = 64 * 1024


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(monkeypatch, capsys)


@pytest.fixture
def books(
    publish_table: Callable[..., PublishResult], publisher: Identity, researcher: Identity
) -> tuple[list[PublishResult], pa.Table]:
    """Two versions of ``acme/books``, the second in several shards, granted to the
    researcher."""
    first = publish_table(sample_table(50))
    table = sample_table(2000, seed=1, text_bytes=200)
    second = publish_table(table, shard_bytes=2 * CHUNK, chunk_bytes=CHUNK, compression="none")
    assert len(second.shards) >= 3
    grant_access(publisher.client, researcher.client, "acme/books")
    return [first, second], table


def test_croissant_is_the_registrys_and_valid(
    cli: Cli,
    registry: str,
    publisher: Identity,
    researcher: Identity,
    books: tuple[list[PublishResult], pa.Table],
    tmp_path: Path,
) -> None:
    versions, _ = books
    served = httpx.get(f"{registry}/v1/datasets/acme/books/versions/1/croissant").content
    code, out, err = cli(researcher.env(), "croissant", "acme/books@1")
    assert code == 0, err
    assert out.encode() == served + b"\n"
    assert json.loads(out)["identifier"] == f"sha256:{versions[0].digest}"
    target = tmp_path / "books.jsonld"
    code, out, err = cli(researcher.env(), "croissant", "acme/books", "-o", str(target))
    assert (code, out) == (0, "")
    assert f"wrote {target}: Croissant of acme/books@2" in err
    latest = httpx.get(f"{registry}/v1/datasets/acme/books/versions/latest/croissant").content
    assert target.read_bytes() == latest + b"\n"
    assert croissant_issues(target.read_text()) == {"errors": [], "warnings": []}
    anyone = {"OSTRACA_HOME": str(tmp_path / "no-identity"), "OSTRACA_REGISTRY": registry}
    code, out, err = cli(anyone, "croissant", "acme/books@1")  # metadata is public
    assert (code, out.encode()) == (0, served + b"\n"), err
    # latest is the newest version not deprecated, on the registry and in the CLI alike
    deprecate_version(publisher.client, "acme/books", 2, reason="superseded")
    first = httpx.get(f"{registry}/v1/datasets/acme/books/versions/latest/croissant").content
    assert first == served
    code, out, err = cli(researcher.env(), "croissant", "acme/books")
    assert (code, out.encode()) == (0, served + b"\n"), err
    assert "acme/books version 2 is deprecated; using version 1" in err
    code, out, err = cli(researcher.env(), "croissant", "acme/books@9")
    assert code == 1
    assert "error [not_found]" in err


def test_export_from_a_grant_and_from_a_pulled_copy(
    cli: Cli, researcher: Identity, books: tuple[list[PublishResult], pa.Table], tmp_path: Path
) -> None:
    versions, table = books
    env = researcher.env()
    summary = cli.json(env, "export", "acme/books@2", str(tmp_path / "pq"), "--format", "parquet")
    names = [f"part-{i:05d}.parquet" for i in range(len(versions[1].shards))]
    assert [f["name"] for f in summary["files"]] == names
    assert (summary["dataset"], summary["version"], summary["rows"]) == ("acme/books", 2, 2000)
    assert summary["manifest_digest"] == versions[1].digest
    glob = tmp_path / "pq" / "*.parquet"
    relation = duckdb.sql(f"SELECT count(*), sum(id) FROM read_parquet('{glob}')")
    assert relation is not None
    assert relation.fetchall() == [(2000, sum(table["id"].to_pylist()))]
    assert pl.read_parquet(glob).to_arrow().cast(table.schema).equals(table)

    code, out, err = cli(env, "pull", "acme/books@2", str(tmp_path / "copy"), "-q")
    assert code == 0, err
    code, out, err = cli(
        env,
        "export",
        "acme/books",
        str(tmp_path / "arrow"),
        "--from-dir",
        str(tmp_path / "copy"),
        "--format",
        "arrow",
        "--columns",
        "id,text",
    )
    assert code == 0, err
    assert out.startswith(f"exported acme/books@2: {len(names)} arrow files, 2,000 rows, ")
    ipc = [pa.ipc.open_file(tmp_path / "arrow" / n.replace(".parquet", ".arrow")) for n in names]
    got = pa.concat_tables(f.read_all() for f in ipc)
    assert got.equals(table.select(["id", "text"]))
    assert pl.scan_ipc(tmp_path / "arrow" / "*.arrow").collect().height == 2000

    code, out, err = cli(
        env, "export", "acme/books@1", str(tmp_path / "x"), "--from-dir", str(tmp_path / "copy")
    )
    assert code == 1
    assert f"error [malformed] {tmp_path / 'copy'} holds acme/books@2, not acme/books@1" in err
    code, out, err = cli(env, "export", "acme/books", str(tmp_path / "pq"))
    assert code == 1
    assert "error [conflict]" in err
    assert "not empty" in err
    code, out, err = cli(env, "export", "acme/books", str(tmp_path / "y"), "--format", "csv")
    assert code == 2
    assert "error [usage]" in err
