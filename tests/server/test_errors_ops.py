from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from ostraca.protocol_spec import SigningKey, wire
from ostraca.server.app import create_app
from ostraca.server.settings import Settings
from ostraca.server.storage import LocalStorage

from .conftest import World
from .server_helpers import Identity, assert_problem, new_identity, registration_body

API_PATHS = {
    "/v1/principals": {"post"},
    "/v1/principals/{keyid}": {"get"},
    "/v1/principals/{keyid}/rotations": {"post", "get"},
    "/v1/auth/challenge": {"post"},
    "/v1/auth/token": {"post", "delete"},
    "/v1/whoami": {"get"},
    "/v1/namespaces": {"post"},
    "/v1/namespaces/{ns}": {"get"},
    "/v1/datasets": {"get"},
    "/v1/datasets/{ns}/{name}": {"get"},
    "/v1/datasets/{ns}/{name}/versions": {"post"},
    "/v1/datasets/{ns}/{name}/versions/{version}/manifest": {"get"},
    "/v1/datasets/{ns}/{name}/versions/{version}/croissant": {"get"},
    "/v1/datasets/{ns}/{name}/audit": {"get"},
    "/v1/datasets/{ns}/{name}/card": {"get", "post"},
    "/v1/datasets/{ns}/{name}/deprecations": {"get", "post"},
    "/v1/uploads": {"post"},
    "/v1/uploads/{upload_id}": {"get", "patch", "put", "delete"},
    "/v1/datasets/{ns}/{name}/blobs/{digest}": {"get", "head"},
    "/v1/namespaces/{ns}/blobs/{digest}": {"head"},
    "/v1/requests": {"post", "get"},
    "/v1/requests/{request_id}": {"get"},
    "/v1/requests/{request_id}/deny": {"post"},
    "/v1/grants": {"post", "get"},
    "/v1/grants/{grant_id}": {"get"},
    "/v1/revocations": {"post"},
    "/v1/encryption-keys": {"post"},
    "/v1/principals/{keyid}/encryption-keys": {"get"},
    "/v1/key-grants": {"post"},
    "/v1/datasets/{ns}/{name}/key-grants": {"get"},
    "/v1/log/checkpoint": {"get"},
    "/v1/log/entries": {"get"},
    "/v1/log/key": {"get"},
    "/v1/log/proof/consistency": {"get"},
    "/v1/log/proof/inclusion": {"get"},
    "/v1/log/proof/range": {"get"},
    "/v1/log/proofs": {"get"},
    "/v1/log/statements/{statement_id}": {"get"},
    "/healthz": {"get"},
    "/metrics": {"get"},
}


def _dataset_count(client: TestClient) -> int:
    total: int = client.get("/v1/datasets").json()["total"]
    return total


def test_path_like_names(client: TestClient, world: World) -> None:
    before = _dataset_count(client)
    assert_problem(client.get("/v1/datasets/acme/a..b"), 422, "malformed")
    assert_problem(client.get("/v1/datasets/acme/..%2F..%2Fetc"), 404, "not_found")
    assert_problem(client.get("/v1/datasets/ACME/books"), 422, "malformed")
    r = client.post("/v1/namespaces", json={"name": "../x"}, headers=world.owner.headers)
    assert_problem(r, 422, "malformed")
    r = client.get("/v1/datasets/acme/books/blobs/sha256:..", headers=world.granted.headers)
    assert_problem(r, 422, "malformed")
    r = client.get(
        "/v1/datasets/acme/books/blobs/sha256:..%2F..%2Fetc%2Fpasswd", headers=world.granted.headers
    )
    assert_problem(r, 404, "not_found")
    r = client.get("/v1/uploads/..%2F..%2Fsha256", headers=world.owner.headers)
    assert_problem(r, 404, "not_found")
    r = client.get("/v1/uploads/..", headers=world.owner.headers)
    assert_problem(r, 404, "not_found")
    r = client.get("/v1/datasets/acme/books/versions/..%2F1/manifest")
    assert_problem(r, 404, "not_found")
    r = client.get("/v1/datasets/acme/books/versions/1e3/manifest")
    assert_problem(r, 422, "malformed")
    assert _dataset_count(client) == before


def test_malformed_json_and_content_types(client: TestClient, world: World) -> None:
    before = _dataset_count(client)
    json_headers = {**world.owner.headers, "Content-Type": "application/json"}
    r = client.post("/v1/principals", content=b"{", headers={"Content-Type": "application/json"})
    assert_problem(r, 422, "malformed")
    key = SigningKey.generate()
    body = registration_body(key, name="Ada", kind="researcher")
    r = client.post("/v1/principals", json={**body, "admin": True})
    assert_problem(r, 422, "malformed")
    r = client.post("/v1/principals", json={**body, "kind": "admin"})
    assert_problem(r, 422, "malformed")
    r = client.post("/v1/principals", content=b'{"a": 1}', headers={"Content-Type": "text/plain"})
    assert_problem(r, 415, "unsupported_media_type")
    assert_problem(client.get(f"/v1/principals/{key.keyid}"), 404, "not_found")
    for payload in (b"{", b"[]", b'{"payload": "x"}', b"\xff\xfe"):
        r = client.post("/v1/datasets/acme/books/versions", content=payload, headers=json_headers)
        assert_problem(r, 422, "malformed")
    r = client.post(
        "/v1/datasets/acme/books/versions",
        content=world.built.envelope,
        headers={**world.owner.headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(r, 415, "unsupported_media_type")
    r = client.post("/v1/grants", content=world.built.envelope, headers=json_headers)
    assert_problem(r, 422, "wrong_payload_type")
    r = client.post(
        "/v1/uploads", json={"namespace": "acme", "size": "10"}, headers=world.owner.headers
    )
    assert_problem(r, 422, "malformed")
    r = client.post(
        "/v1/uploads", json={"namespace": "acme", "size": -1}, headers=world.owner.headers
    )
    assert_problem(r, 422, "malformed")
    r = client.get("/v1/datasets?limit=0")
    assert_problem(r, 422, "malformed")
    assert _dataset_count(client) == before


def test_envelope_size_cap(database_url: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=database_url,
        max_statement_bytes=64 * 1024,
    )
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/v1/requests",
            content=b"{" + b" " * (70 * 1024) + b"}",
            headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
        )
        # The token is checked before the body is read.
        assert_problem(r, 401, "unauthenticated")
        who = new_identity(client, "researcher", "Ada")
        r = client.post(
            "/v1/requests",
            content=b"{" + b" " * (70 * 1024) + b"}",
            headers={"Content-Type": "application/json", **who.headers},
        )
        assert_problem(r, 413, "too_large")


def test_unknown_routes_and_methods(client: TestClient) -> None:
    assert_problem(client.get("/v2/nothing"), 404, "not_found")
    assert_problem(client.put("/v1/datasets"), 405, "method_not_allowed")


class _BrokenStorage(LocalStorage):
    def start_upload(self, upload_id: str) -> None:
        raise RuntimeError("disk on fire: /secret/path")


@pytest.fixture
def broken_client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, storage=_BrokenStorage(settings.storage_path))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_unexpected_errors_are_500_without_details(
    broken_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    who: Identity = new_identity(broken_client, "institution", "Acme")
    broken_client.post("/v1/namespaces", json={"name": "acme"}, headers=who.headers)
    with caplog.at_level(logging.ERROR, logger="ostraca.server.error"):
        r = broken_client.post(
            "/v1/uploads", json={"namespace": "acme", "size": 1}, headers=who.headers
        )
    assert_problem(r, 500, "error")
    assert "fire" not in r.text
    assert "Traceback" not in r.text
    assert "disk on fire" in caplog.text


def test_healthz_metrics_and_openapi(client: TestClient, world: World) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok", "storage": "ok"}
    client.get(f"/v1/datasets/acme/books/blobs/sha256:{world.shard}", headers=world.granted.headers)
    text = client.get("/metrics").text
    size = len(world.built.blobs[world.shard])
    route = "/v1/datasets/{ns}/{name}/blobs/{digest}"
    assert f'ostraca_http_requests_total{{method="GET",route="{route}",status="200"}}' in text
    assert f"ostraca_blob_bytes_served_total {float(size)}" in text
    assert 'ostraca_access_decisions_total{outcome="allowed"} 1.0' in text
    spec = client.get("/openapi.json").json()
    assert {p: set(ops) for p, ops in spec["paths"].items()} == API_PATHS
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            ok = [c for c in op["responses"] if c.startswith("2")]
            assert ok, (method, path)
            content = op["responses"][ok[0]].get("content", {})
            if "application/json" in content and path not in {"/healthz"}:
                schema = content["application/json"].get("schema", {})
                if not path.endswith("/manifest"):
                    assert "$ref" in schema, (method, path, schema)
    assert client.get("/docs").status_code == 200


def test_every_json_body_is_a_wire_model_of_the_protocol(client: TestClient) -> None:
    """The registry speaks the models of ``protocol_spec.wire`` (HTTP_API.md), the ones a
    client parses: no route defines a JSON body of its own."""
    spec = client.get("/openapi.json").json()
    bodies = set(spec["components"]["schemas"]) - {"HTTPValidationError", "ValidationError"}
    models = {
        name
        for name, value in vars(wire).items()
        if isinstance(value, type) and issubclass(value, BaseModel)
    }
    assert {"PrincipalOut", "DatasetDetail", "RegisterIn", "GrantItem"} <= bodies
    assert bodies <= models, sorted(bodies - models)
