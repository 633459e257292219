"""``GET /v1/datasets/{ns}/{name}/versions/{version}/croissant``: Croissant 1.0 JSON-LD of every
version, public, validated by mlcroissant (in a child process, as the card's is)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pyarrow as pa
from fastapi.testclient import TestClient

from ostraca.client import PublishResult
from ostraca.protocol_spec import DatasetManifest, parse_canonical
from ostraca.protocol_spec.croissant import CONFORMS_TO, MEDIA_TYPE

from ..client.client_helpers import Identity as ClientIdentity
from ..client.client_helpers import sample_table
from ..web.test_pages import _VALIDATE
from .conftest import World
from .server_helpers import TERMS, assert_problem, publish_dataset

PATH = "/v1/datasets/acme/books/versions/{}/croissant"


def croissant_issues(body: str) -> dict[str, list[str]]:
    """mlcroissant's errors and warnings about the JSON-LD ``body``."""
    checked = subprocess.run(
        [sys.executable, "-c", _VALIDATE], input=body, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr[-2000:]
    found: dict[str, list[str]] = json.loads(checked.stdout.strip().splitlines()[-1])
    return found


def _files(jsonld: dict[str, Any], kind: str = "cr:FileObject") -> list[dict[str, Any]]:
    return [d for d in jsonld["distribution"] if d["@type"] == kind]


def test_every_version_has_valid_public_croissant(client: TestClient, world: World) -> None:
    v2 = publish_dataset(
        client,
        world.owner,
        world.dataset,
        shards=3,
        version=2,
        previous=world.built.digest,
        create_namespace=False,
        seed=1,
    )
    for built, version in ((world.built, "1"), (v2, "2"), (v2, "latest")):
        r = client.get(PATH.format(version))  # no token: metadata is public
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == MEDIA_TYPE
        jsonld = r.json()
        m = built.manifest
        assert jsonld["conformsTo"] == CONFORMS_TO
        assert jsonld["identifier"] == f"sha256:{built.digest}"
        assert jsonld["version"] == f"{m.version}.0.0"
        assert jsonld["license"] == "https://spdx.org/licenses/CC-BY-4.0.html"
        assert jsonld["conditionsOfAccess"] == TERMS
        assert jsonld["publisher"] == {"@type": "sc:Organization", "name": "Acme Institute"}
        assert jsonld["citeAs"].startswith(f"Acme Institute. acme/books, version {m.version} ")
        assert built.digest in jsonld["citeAs"]
        files = _files(jsonld)
        assert [f["sha256"] for f in files] == [s.sha256 for s in m.shards]
        assert [f["contentSize"] for f in files] == [f"{s.bytes} B" for s in m.shards]
        assert files[0]["contentUrl"] == (
            f"http://testserver/v1/datasets/acme/books/blobs/sha256:{m.shards[0].sha256}"
        )
        [shards] = _files(jsonld, "cr:FileSet")
        assert shards["containedIn"] == [{"@id": f["@id"]} for f in files]
        fields = jsonld["recordSet"][0]["field"]
        assert [(f["name"], f["dataType"]) for f in fields] == [
            ("id", "sc:Integer"),
            ("text", "sc:Text"),
        ]
        assert croissant_issues(r.text) == {"errors": [], "warnings": []}


def test_unknown_versions_and_datasets(client: TestClient, world: World) -> None:
    assert_problem(client.get(PATH.format("2")), 404, "not_found")
    assert_problem(client.get(PATH.format("0")), 404, "not_found")
    assert_problem(client.get(PATH.format("one")), 422, "malformed")
    assert_problem(client.get(PATH.format("9" * 16)), 422, "malformed")
    assert_problem(client.get("/v1/datasets/acme/nothing/versions/1/croissant"), 404, "not_found")
    assert world.dataset == "acme/books"


def test_openapi_types_the_croissant_answer(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    get = doc["paths"]["/v1/datasets/{ns}/{name}/versions/{version}/croissant"]["get"]
    assert "security" not in get
    schema = get["responses"]["200"]["content"][MEDIA_TYPE]["schema"]
    assert {"@context", "distribution", "recordSet", "license", "citeAs"} <= set(schema["required"])
    assert schema["properties"]["conformsTo"] == {"const": CONFORMS_TO}


def test_column_groups_and_sealed_blobs_over_http(
    registry: str, publisher: ClientIdentity, publish_table: Callable[..., PublishResult]
) -> None:
    """A version with a column group of its own, encrypted (the default): each blob of each
    shard is a FileObject, each group a FileSet and a RecordSet of its columns."""
    table: pa.Table = sample_table(3000, text_bytes=400)
    result = publish_table(
        table,
        column_groups={"scores": ["score"]},
        shard_bytes=128 * 1024,
        chunk_bytes=64 * 1024,
        compression="none",
    )
    r = httpx.get(f"{registry}{PATH.format(result.version)}")
    assert r.status_code == 200, r.text
    jsonld = r.json()
    env = publisher.client.get_manifest_envelope("acme/books")
    m = DatasetManifest.from_json_obj(parse_canonical(env.payload))
    assert len(m.shards) > 1
    files = _files(jsonld)
    want = sorted((b.sha256, b.bytes) for s in m.shards for b in s.blobs())
    assert sorted((f["sha256"], int(f["contentSize"].split()[0])) for f in files) == want
    assert {f["encodingFormat"] for f in files} == {"application/octet-stream"}
    sets = {s["@id"]: s for s in _files(jsonld, "cr:FileSet")}
    assert set(sets) == {"shards", "shards-scores"}
    assert len(sets["shards-scores"]["containedIn"]) == len(m.shards)
    sources = {
        (r["@id"], f["name"]): f["source"]["fileSet"]["@id"]
        for r in jsonld["recordSet"]
        for f in r["field"]
    }
    assert sources == {
        ("records", "id"): "shards",
        ("records", "text"): "shards",
        ("records-scores", "score"): "shards-scores",
    }
    assert croissant_issues(r.text) == {"errors": [], "warnings": []}
