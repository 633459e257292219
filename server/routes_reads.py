"""Reading blobs through a dataset: ``HEAD`` and ranged ``GET`` of
``/v1/datasets/{ns}/{name}/blobs/{digest}``, each authorized against the dataset it names and
audited there, on facts read at request time (``access.lookup_read``, ``access.decide_read``).

These are the registry's hot routes, so they are lean: the handlers take the bare request (no
dependency solving or parameter validation beyond the digest's own check), their router is
the app's first, and the authorization (token lookup, one query, the audit commit) runs on a
small pool of its own (:data:`READS`) rather than through anyio's worker-thread machinery."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

from fastapi import APIRouter, Request, Response

from ostraca.protocol_spec.errors import (
    AccessDeniedError,
    MalformedError,
    NotFoundError,
    OstracaError,
)

from .access import (
    Decision,
    ReadFacts,
    decide_read,
    lookup_read,
    not_listed,
    pooled_connection,
)
from .audit import audit_writer
from .delivery import RegistryBody, offloaded_read
from .deps import AppContext, Caller, _bearer, get_context
from .ranges import ByteRange, parse_range
from .repo import dataset_name
from .storage import FileStorage
from .zerocopy import ZEROCOPY

router = APIRouter(prefix="/v1", tags=["blobs"])

_DIGEST_RE = re.compile(r"^sha256:([0-9a-f]{64})$")
SMALL_BODY = 1024 * 1024
"""Ranges up to this many bytes are read in the same worker-thread call as the authorization
and sent in one response; longer ones are streamed (``delivery.RegistryBody``)."""
BLOB_CACHE_CONTROL = "private, max-age=31536000, immutable"
READS = ThreadPoolExecutor(8, thread_name_prefix="ostraca-read")
"""The worker threads that authorize blob reads: at most this many use a pooled database
connection at once per process, below the engine's pool size, so bursts queue here instead of
opening and closing overflow connections (a new SQLite connection costs its PRAGMAs)."""


def _path_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "title": name.capitalize()},
        "description": description,
    }


_PARAMETERS = {
    "parameters": [
        _path_parameter("ns", "the dataset's namespace"),
        _path_parameter("name", "the dataset's name in its namespace"),
        _path_parameter("digest", "sha256:<64 lowercase hex> of the blob"),
    ]
}
"""The path parameters, declared for the OpenAPI document (the handlers read them raw)."""


def parse_digest(text: str) -> str:
    m = _DIGEST_RE.match(text)
    if m is None:
        raise MalformedError("blob digest must be written sha256:<64 lowercase hex>")
    return m.group(1)


def _target(request: Request) -> tuple[AppContext, str, str]:
    """The app context, the dataset named in the path and the blob's bare hex digest."""
    p = request.path_params
    return get_context(request), dataset_name(p["ns"], p["name"]), parse_digest(p["digest"])


def _blob_headers(hexdigest: str) -> dict[str, str]:
    return {
        "ETag": f'"sha256:{hexdigest}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": BLOB_CACHE_CONTROL,
    }


def _refused(
    ctx: AppContext, raw: Any, read: ReadFacts, dataset: str, hexdigest: str, exc: OstracaError
) -> None:
    """Audit a refused read into the dataset it named (committed before the refusal is
    answered)."""
    ctx.metrics.refused.inc()
    facts = read.facts
    if read.caller is None or facts is None:  # anonymous, or no such dataset: nothing to audit
        return
    audit_writer(ctx.db.engine).record(
        connection=raw,
        now=ctx.clock(),
        action="read_refused",
        principal=read.caller.keyid,
        dataset=dataset,
        version=facts.versions[0][0] if facts.versions else None,
        grant_id=None,
        detail=f"sha256:{hexdigest}: {exc.code}: {exc.message}",
    )


def _authorize(
    ctx: AppContext, raw: Any, request: Request, dataset: str, hexdigest: str
) -> tuple[Caller, Decision, int]:
    """Authorize on facts read at request time on DBAPI connection ``raw``; a refusal is
    audited before it is raised."""
    now = ctx.clock()
    token = _bearer(request)
    read = lookup_read(raw, ctx.db.engine.dialect, token, dataset, hexdigest, now)
    try:
        caller, decision, size = decide_read(read, dataset, hexdigest, now)
    except (AccessDeniedError, NotFoundError) as exc:
        _refused(ctx, raw, read, dataset, hexdigest, exc)
        raise
    ctx.metrics.allowed.inc()
    return caller, decision, size


def _head(ctx: AppContext, request: Request, dataset: str, hexdigest: str) -> int:
    """The size, if the caller may read the blob; any refusal is a 404 (no oracle)."""
    with pooled_connection(ctx.db.engine) as raw:
        try:
            return _authorize(ctx, raw, request, dataset, hexdigest)[2]
        except AccessDeniedError as exc:
            raise not_listed(dataset, hexdigest) from exc


def size_response(hexdigest: str, size: int) -> Response:
    headers = _blob_headers(hexdigest)
    headers["Content-Length"] = str(size)
    return Response(status_code=200, headers=headers, media_type="application/octet-stream")


@router.head(
    "/datasets/{ns}/{name}/blobs/{digest}",
    response_class=Response,
    responses={404: {}},
    openapi_extra=_PARAMETERS,
)
async def head_blob(request: Request) -> Response:
    ctx, dataset, hexdigest = _target(request)
    loop = asyncio.get_running_loop()
    size = await loop.run_in_executor(READS, _head, ctx, request, dataset, hexdigest)
    return size_response(hexdigest, size)


@dataclass(slots=True)
class _Plan:
    headers: dict[str, str]
    status: int
    rng: ByteRange
    decision: Decision
    audited: bool
    """The read's audit event is committed (``False``: 304, nothing is served)."""
    body: bytes | None
    """The whole body when the range is small (read in the same worker-thread call)."""
    file: BinaryIO | None = None
    """The blob's file, when a large range goes to the kernel (``zerocopysend``)."""


def _plan_get(ctx: AppContext, request: Request, dataset: str, hexdigest: str) -> _Plan | Response:
    with pooled_connection(ctx.db.engine) as raw:
        return _plan(ctx, raw, request, dataset, hexdigest)


def _plan(
    ctx: AppContext, raw: Any, request: Request, dataset: str, hexdigest: str
) -> _Plan | Response:
    """Authorize and audit a GET on connection ``raw``; what to answer."""
    caller, decision, size = _authorize(ctx, raw, request, dataset, hexdigest)
    headers = _blob_headers(hexdigest)
    if request.headers.get("if-none-match") == headers["ETag"]:
        return _Plan(headers, 304, ByteRange(0, -1, False), decision, False, None)
    rng = parse_range(request.headers.get("range"), size) if size else ByteRange(0, -1, False)
    if size and ctx.settings.blob_delivery != "stream":  # the bytes bypass the registry
        return offloaded_read(
            ctx,
            connection=raw,
            principal=caller.keyid,
            decision=decision,
            hexdigest=hexdigest,
            start=rng.start,
            end=rng.end,
            size=size,
            headers=headers,
        )
    # Committed before any byte is sent (raises, so nothing is sent, if it cannot be).
    audit_writer(ctx.db.engine).record(
        connection=raw,
        now=ctx.clock(),
        action="read",
        principal=caller.keyid,
        dataset=decision.dataset,
        version=decision.version,
        grant_id=decision.grant_id,
        detail=f"sha256:{hexdigest} bytes {rng.start}-{rng.end}/{size}",
    )
    headers["Content-Length"] = str(rng.end - rng.start + 1)
    if rng.partial:
        headers["Content-Range"] = f"bytes {rng.start}-{rng.end}/{size}"
    plan = _Plan(headers, 206 if rng.partial else 200, rng, decision, True, None)
    if rng.end - rng.start + 1 <= SMALL_BODY:
        plan.body = b"".join(ctx.storage.read_range(hexdigest, rng.start, rng.end))
        ctx.metrics.blob_bytes.inc(len(plan.body))
    elif ZEROCOPY in request.scope.get("extensions", {}) and isinstance(ctx.storage, FileStorage):
        plan.file = ctx.storage.open_blob(hexdigest)
    return plan


@router.get(
    "/datasets/{ns}/{name}/blobs/{digest}",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "Blob bytes"},
        206: {"content": {"application/octet-stream": {}}, "description": "One byte range"},
    },
    openapi_extra=_PARAMETERS,
)
async def get_blob(request: Request) -> Response:
    """Authorize against the dataset named (token + one query, on a :data:`READS` thread), have the
    audit event committed, and only then send bytes: a small range in one response, a large
    one streamed (``delivery.RegistryBody``) with the grant re-checked every
    ``RECHECK_BYTES``."""
    ctx, dataset, hexdigest = _target(request)
    loop = asyncio.get_running_loop()
    plan = await loop.run_in_executor(READS, _plan_get, ctx, request, dataset, hexdigest)
    if isinstance(plan, Response):
        return plan
    if not plan.audited:
        return Response(status_code=304, headers=plan.headers)
    if plan.body is not None:
        return Response(
            plan.body,
            status_code=plan.status,
            headers=plan.headers,
            media_type="application/octet-stream",
        )
    return RegistryBody(
        ctx,
        hexdigest=hexdigest,
        rng=plan.rng,
        grant_id=plan.decision.grant_id,
        status=plan.status,
        headers=plan.headers,
        file=plan.file,
    )
