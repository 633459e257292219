"""The OpenAPI 3.1 document is valid, every error is a defined Problem, bearer auth is declared,
every success body is typed, and the API docs load without a network."""

from __future__ import annotations

import re

import httpx
from openapi_spec_validator import validate
from openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator

from .security_helpers import blob_route

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def _operations(doc: dict[str, object]) -> list[tuple[str, str, dict[str, object]]]:
    paths = doc["paths"]
    assert isinstance(paths, dict)
    return [(path, method, op) for path, ops in paths.items() for method, op in ops.items()]


def test_document_is_valid_openapi_3_1(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    validate(doc, cls=OpenAPIV31SpecValidator)


def test_problem_schema_is_defined_and_used_by_every_operation(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    for path, method, op in _operations(doc):
        responses = op["responses"]
        assert isinstance(responses, dict)
        for status in ("4XX", "5XX"):
            content = responses[status]["content"]["application/problem+json"]
            assert content["schema"] == PROBLEM_REF, (method, path, status)


def test_bearer_scheme_is_declared_on_authenticated_operations(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from POST /v1/auth/token (ostraca login)",
    }
    secured = {(p, m) for p, m, op in _operations(doc) if op.get("security") == [{"bearer": []}]}
    assert ("/v1/whoami", "get") in secured
    assert ("/v1/uploads", "post") in secured
    assert ("/v1/datasets/{ns}/{name}/versions", "post") in secured
    assert ("/v1/auth/challenge", "post") not in secured


def test_every_success_response_is_typed(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    for path, method, op in _operations(doc):
        responses = op["responses"]
        assert isinstance(responses, dict)
        for status, response in responses.items():
            if not status.startswith("2") or status == "204":
                continue
            typed = response.get("content") or response.get("headers")
            assert typed, (method, path, status)
            for media_type, content in response.get("content", {}).items():
                assert content.get("schema"), (method, path, status, media_type)
    blob = doc["paths"][blob_route(doc)]["get"]["responses"]
    assert blob["206"]["content"]["application/octet-stream"]["schema"]["type"] == "string"
    manifest = doc["paths"]["/v1/datasets/{ns}/{name}/versions/{version}/manifest"]["get"]
    schema = manifest["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["payloadType", "payload", "signatures"]


def test_docs_pages_load_their_assets_from_the_registry(http: httpx.Client) -> None:
    for page in ("/docs", "/redoc"):
        html = http.get(page)
        assert html.status_code == 200
        urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html.text)
        assets = [u for u in urls if u.endswith((".js", ".css"))]
        assert assets, page
        assert not [u for u in urls if "//" in u], urls
        for asset in assets:
            r = http.get(asset)
            assert r.status_code == 200, asset
            assert len(r.content) > 100_000, asset
