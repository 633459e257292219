"""The registry's OpenAPI 3.1 document, and Swagger UI and ReDoc served from the registry.

FastAPI writes the document from the routes; this module completes it: the ``Problem`` schema
every error response refers to (``protocol_spec.wire.Problem``), a schema for each body FastAPI
leaves untyped (a manifest envelope, inline as it is no wire model; other JSON as an object;
blob bytes; Prometheus text), and the ``Content-Length`` of a blob HEAD. The pages'
JavaScript and CSS are files under ``static/swagger`` (from the ``fastapi-offline`` wheel on
PyPI: Swagger UI and ReDoc's standalone bundle), so ``/docs`` works with no network.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse

from ostraca.protocol_spec.wire import Problem

ASSETS = "/static/swagger"
NO_FAVICON = "data:,"

ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A DSSE envelope: the signed statement's bytes in base64 and its signatures.",
    "required": ["payloadType", "payload", "signatures"],
    "properties": {
        "payloadType": {"type": "string"},
        "payload": {"type": "string", "contentEncoding": "base64"},
        "signatures": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["keyid", "sig"],
                "properties": {"keyid": {"type": "string"}, "sig": {"type": "string"}},
            },
        },
    },
}


def _body_schema(path: str, media_type: str) -> dict[str, Any]:
    if media_type == "application/json":
        return ENVELOPE_SCHEMA if path.endswith("/manifest") else {"type": "object"}
    if media_type.startswith("text/"):
        return {"type": "string"}
    return {"type": "string", "contentMediaType": media_type}


def _type_bodies(doc: dict[str, Any]) -> None:
    """Give every schemaless success body a schema, and a bodiless 200 its length."""
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if not status.startswith("2"):
                    continue
                for media_type, content in response.get("content", {}).items():
                    if not content.get("schema"):
                        content["schema"] = _body_schema(path, media_type)
                if status == "200" and "content" not in response:
                    response.setdefault(
                        "headers", {"Content-Length": {"schema": {"type": "integer"}}}
                    )


def build_document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        openapi_version=app.openapi_version,
        routes=app.routes,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    _type_bodies(doc)
    return doc


def install(app: FastAPI) -> None:
    """The completed document at ``/openapi.json``; Swagger UI at ``/docs``, ReDoc at
    ``/redoc`` (``create_app`` turns FastAPI's CDN-loading pages off)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} (Swagger UI)",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=NO_FAVICON,
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} (ReDoc)",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=NO_FAVICON,
            with_google_fonts=False,
        )
