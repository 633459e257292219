"""``ostraca publish --chunk-digest`` through the installed entry point against a real
registry: blake3 by default, ``sha256`` leaves the field out (a manifest older readers verify);
both read back verified, and an unknown name is a usage error."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ostraca.client.stream import open_dataset
from ostraca.protocol_spec import DatasetManifest

from ..cli.test_exit_codes import ostraca
from .client_helpers import TERMS, Identity, sample_table
from .stream_helpers import grant_access


@pytest.mark.parametrize("option", [[], ["--chunk-digest", "sha256"], ["--chunk-digest", "blake3"]])
def test_publish_chunk_digest_option(
    publisher: Identity, researcher: Identity, tmp_path: Path, option: list[str]
) -> None:
    table = sample_table(300)
    pq.write_table(table, tmp_path / "books.parquet")
    args = ["--dataset", "acme/books", "--license", "CC-BY-4.0", "--terms", TERMS, "--json"]
    proc = ostraca(publisher.env(), "publish", str(tmp_path / "books.parquet"), *args, *option)
    assert proc.returncode == 0, proc.stderr
    env = publisher.client.get_manifest_envelope("acme/books", "latest")
    assert env.digest == json.loads(proc.stdout)["digest"]
    payload = json.loads(env.payload)
    expected = option[1] if option else "blake3"
    assert payload.get("chunk_digest", "sha256") == expected
    assert ("chunk_digest" in payload) == (expected == "blake3")
    assert DatasetManifest.from_json_obj(payload).chunk_algorithm == expected
    grant_access(publisher.client, researcher.client, "acme/books")
    with open_dataset("acme/books", client=researcher.client) as ds:
        assert ds.to_table().equals(table)


def test_an_unknown_chunk_digest_is_a_usage_error(publisher: Identity, tmp_path: Path) -> None:
    pq.write_table(sample_table(10), tmp_path / "b.parquet")
    args = ["--dataset", "acme/books", "--license", "MIT", "--terms", TERMS]
    proc = ostraca(
        publisher.env(), "publish", str(tmp_path / "b.parquet"), *args, "--chunk-digest", "md5"
    )
    assert proc.returncode == 2
    assert "md5" in proc.stderr
