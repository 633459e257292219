"""The one place where a registry's error answer becomes an :class:`OstracaError`.

The registry answers errors with RFC 9457 problem+json carrying our stable ``code``
(``protocol_spec/errors.py``), which names the exact error class. An answer without a code —
a proxy's HTML page, a bare status — falls back to :data:`CODE_BY_STATUS`. Both transports
(:mod:`.wire` for the API, :mod:`.fetch` for bulk blob bytes) call :func:`error_from_problem`.
"""

from __future__ import annotations

import json

from ostraca.protocol_spec import AccessDeniedError, AuthenticationError, OstracaError
from ostraca.protocol_spec.errors import error_from_code

__all__ = ["CODE_BY_STATUS", "error_from_problem", "request_hint"]

CODE_BY_STATUS = {
    401: "unauthenticated",
    403: "access_denied",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "malformed",
    502: "unavailable",
    503: "unavailable",
    504: "unavailable",
}
"""The error code of an answer that carries none (anything else becomes a plain ``error``)."""

MAX_TEXT = 200
"""How much of a body that is not problem+json is quoted in the message."""


def request_hint(dataset: str) -> str:
    """The command that asks for access to ``dataset`` (named in access errors)."""
    return f"ask for access: ostraca request {dataset} --purpose '...'"


def error_from_problem(
    status: int,
    body: bytes,
    *,
    content_type: str,
    request: str,
    what: str | None = None,
    dataset: str | None = None,
) -> OstracaError:
    """Translate an HTTP error answer to our typed error.

    ``request`` (``"GET /v1/…"``) names the call when the answer says nothing; ``what`` (a
    shard, a blob) is prefixed to the message; ``dataset`` names the dataset the call concerns,
    so that an access error carries the exact command that requests access.
    """
    code, detail, hint = "", "", None
    problem = _json_object(body) if "json" in content_type else None
    if problem is not None:
        code = str(problem.get("code") or "")
        detail = str(problem.get("detail") or problem.get("title") or "")
        raw_hint = problem.get("hint")
        hint = raw_hint if isinstance(raw_hint, str) and raw_hint else None
    else:
        detail = body[:MAX_TEXT].decode("utf-8", "replace").strip()
    code = code or CODE_BY_STATUS.get(status, "error")
    detail = detail or f"{request}: HTTP {status}"
    error = error_from_code(code, f"{what}: {detail}" if what else detail, hint=hint)
    if isinstance(error, AuthenticationError) and error.hint is None:
        error.hint = "log in again with `ostraca login` (is your key registered?)"
    if (
        dataset is not None
        and type(error) is AccessDeniedError
        and (error.hint is None or "ostraca request" not in error.hint)
    ):
        error.hint = request_hint(dataset)
    return error


def _json_object(body: bytes) -> dict[str, object] | None:
    try:
        problem = json.loads(body)
    except ValueError:
        return None
    return problem if isinstance(problem, dict) else None
