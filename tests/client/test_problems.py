"""Error answers → our typed errors: one translator for the API client and the blob fetcher."""

from __future__ import annotations

import json

import pytest

from ostraca.client.problems import error_from_problem
from ostraca.protocol_spec import (
    AccessDeniedError,
    AuthenticationError,
    NotFoundError,
    OstracaError,
    RevokedError,
)
from ostraca.protocol_spec.errors import UnavailableError

PROBLEM = "application/problem+json"


def _problem(**fields: str) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("status", "body", "content_type", "error", "message"),
    [
        pytest.param(
            403, _problem(code="revoked", detail="grant g1 revoked"), PROBLEM,
            RevokedError, "grant g1 revoked", id="the code names the class",
        ),
        pytest.param(
            502, b"<html>Bad Gateway</html>", "text/html",
            UnavailableError, "<html>Bad Gateway</html>", id="a proxy page by status",
        ),
        pytest.param(
            404, b"", "", NotFoundError, "HEAD /v1/blobs/x: HTTP 404", id="no body",
        ),
        pytest.param(
            418, b"{not json", PROBLEM, OstracaError, "{not json", id="broken json",
        ),
    ],
)  # fmt: skip
def test_error_answers(
    status: int, body: bytes, content_type: str, error: type[OstracaError], message: str
) -> None:
    got = error_from_problem(status, body, content_type=content_type, request="HEAD /v1/blobs/x")
    assert type(got) is error
    assert got.message == message


def test_what_prefixes_the_message_and_hints_are_added() -> None:
    denied = error_from_problem(
        403, b"", content_type="", request="GET /v1/x", what="shard 3", dataset="ns/data"
    )
    assert isinstance(denied, AccessDeniedError)
    assert denied.message == "shard 3: GET /v1/x: HTTP 403"
    assert "ostraca request ns/data" in (denied.hint or "")
    login = error_from_problem(
        401, _problem(code="unauthenticated"), content_type=PROBLEM, request=""
    )
    assert isinstance(login, AuthenticationError)
    assert "ostraca login" in (login.hint or "")
