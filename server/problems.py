"""Every failure as RFC 9457 ``application/problem+json``, mapped once.

``OstracaError`` carries its ``code`` and ``http_status``; FastAPI's validation errors, bodies
FastAPI cannot decode (its 400) and values the database cannot store become 422 ``malformed``;
Starlette's own 404/405 keep their status. Unexpected exceptions are turned into a bare 500 by
``metrics.ObservabilityMiddleware`` (no stack trace leaves the server).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ostraca.protocol_spec.errors import OstracaError, RangeNotSatisfiableError

PROBLEM_MEDIA_TYPE = "application/problem+json"


class UploadOffsetError(RangeNotSatisfiableError):
    """A chunk sent at another offset than the session's; carries the current offset."""

    def __init__(self, message: str, *, offset: int) -> None:
        super().__init__(message, hint=f"resume with Upload-Offset: {offset}")
        self.headers = {"Upload-Offset": str(offset)}


class RangeError(RangeNotSatisfiableError):
    """A Range header the blob cannot satisfy; carries ``Content-Range: bytes */size``."""

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.headers = {"Content-Range": f"bytes */{size}"}


def problem_response(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:ostraca:error:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if hint is not None:
        body["hint"] = hint
    return Response(
        content=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _ostraca_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OstracaError)
    headers: dict[str, str] = dict(getattr(exc, "headers", None) or {})
    if exc.http_status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return problem_response(
        status=exc.http_status,
        code=exc.code,
        title=exc.title,
        detail=exc.message,
        hint=exc.hint,
        headers=headers or None,
    )


def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "(request)"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return problem_response(
        status=422,
        code="malformed",
        title="Malformed input",
        detail="; ".join(parts) + more,
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status, detail = exc.status_code, str(exc.detail)
    if status == 400:
        # FastAPI's body parser says 400 for a body it cannot decode (invalid UTF-8, JSON
        # nested past the recursion limit); the protocol says 422 and never 400.
        status, detail = 422, "the body is not JSON in UTF-8 (or is nested too deeply)"
    code = "malformed" if status == 422 else _HTTP_CODES.get(status, "error")
    return problem_response(
        status=status,
        code=code,
        title=code.replace("_", " ").capitalize(),
        detail=detail,
        headers=dict(exc.headers) if exc.headers else None,
    )


def _unstorable(_request: Request, exc: Exception) -> Response:
    """A value the database cannot hold (an integer past 64 bits, a NUL in text): the input's
    fault, so 422; the transaction it was in is rolled back by its session."""
    return problem_response(
        status=422,
        code="malformed",
        title="Malformed input",
        detail=f"a value is out of range or not storable ({type(exc).__name__})",
    )


def _database_error(_request: Request, exc: Exception) -> Response:
    """The database's disk is full (SQLite's SQLITE_FULL, PostgreSQL's 53100): 507, like a
    full blob store. Any other database failure stays a 500."""
    assert isinstance(exc, OperationalError)
    full = getattr(exc.orig, "sqlstate", None) == "53100" or "disk is full" in str(exc.orig)
    if not full:
        raise exc
    return problem_response(
        status=507,
        code="insufficient_storage",
        title="Insufficient storage",
        detail="the registry's database is out of disk space",
        hint="retry later, or ask the operator",
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(OstracaError, _ostraca_error)
    app.add_exception_handler(DataError, _unstorable)
    app.add_exception_handler(OverflowError, _unstorable)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


_PROBLEM_CONTENT = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"description": "Problem details (RFC 9457)", "content": _PROBLEM_CONTENT},
    "5XX": {
        "description": "Problem details: 507 insufficient_storage, 503, 500",
        "content": _PROBLEM_CONTENT,
    },
}
