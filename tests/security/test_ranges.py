"""A hostile Range header on an authorized blob read, over HTTP: refused as 416, never a 500."""

from __future__ import annotations

import httpx
import pytest

from ..registry_helpers import Registry
from ..server.server_helpers import (
    Identity,
    assert_problem,
    blob_url,
    grant_access,
    publish_dataset,
    request_access,
)
from .security_helpers import snapshot


@pytest.mark.parametrize(
    "header",
    [
        "bytes=" + "1" * 5000 + "-",  # int() refuses over 4,300 digits
        "bytes=0-" + "9" * 40,
        "bytes=²-3",
        "bytes=5-2",
    ],
)
def test_hostile_ranges_are_416(
    live: Registry, http: httpx.Client, institution: Identity, researcher: Identity, header: str
) -> None:
    built = publish_dataset(http, institution, "acme/books")
    grant_access(
        http,
        institution,
        researcher,
        "acme/books",
        request=request_access(http, researcher, "acme/books"),
    )
    url = blob_url("acme/books", built.manifest.shards[0].sha256)
    assert http.get(url, headers={**researcher.headers, "Range": "bytes=0-0"}).status_code == 206
    before = snapshot(live.settings)
    raw = {k.encode(): v.encode() for k, v in researcher.headers.items()}
    r = http.get(url, headers={**raw, b"Range": header.encode("latin-1")})
    assert_problem(r, 416, "range_not_satisfiable")
    change = before.changes(snapshot(live.settings))
    assert set(change) <= {"rows", "audit"}
    assert change.get("rows", {}) in ({}, {"audit_events": 1})
