"""Content-addressed blobs after the OCI distribution spec: resumable chunked uploads into a
namespace (start → append at offset → finish with digest, re-hashed), HEAD in the namespace for
dedup, and HEAD / ranged GET through a dataset (``/v1/datasets/{ns}/{name}/blobs/{digest}``),
each read authorized and audited against the dataset it names.

Bytes are stored once whoever uploads them; access is per namespace (``namespace_blobs``): a
blob becomes listable by a namespace's manifests only when its owner has sent the bytes into it,
so knowing a digest is never enough."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ostraca.protocol_spec.errors import (
    AccessDeniedError,
    DigestMismatchError,
    MalformedError,
    NotFoundError,
    OstracaError,
    TooLargeError,
    UnsupportedMediaTypeError,
)
from ostraca.protocol_spec.wire import (
    BlobOut,
    UploadIn,
    UploadOut,
)

from .access import Decision, ReadFacts, decide_read, grant_still_valid, lookup_read, not_listed
from .audit import audit_writer
from .db import Blob, Namespace, NamespaceBlob, UploadSession
from .delivery import offloaded_read
from .deps import (
    AppContext,
    Caller,
    ContextDep,
    InstitutionDep,
    JsonBody,
    PrincipalDep,
    SessionDep,
    _bearer,
)
from .parsing import ascii_uint, require_uint
from .problems import UploadOffsetError
from .quotas import check_upload_quota, upload_expiry
from .ranges import ByteRange, parse_range
from .repo import (
    advance_upload,
    dataset_name,
    delete_uploads,
    expired_uploads,
    get_namespace,
    namespace_blob_sizes,
    owned_namespace,
)

router = APIRouter(prefix="/v1", tags=["blobs"])

_DIGEST_RE = re.compile(r"^sha256:([0-9a-f]{64})$")
_UPLOAD_RE = re.compile(r"^[0-9a-f]{32}$")
WRITE_BUFFER = 1024 * 1024
RECHECK_BYTES = 8 * 1024 * 1024
"""While streaming on a grant, re-check revocation and expiry every this many bytes."""
SMALL_BODY = 1024 * 1024
"""Ranges up to this many bytes are read in the same worker-thread call as the authorization
and sent in one response; longer ones are streamed in storage blocks."""
BLOB_CACHE_CONTROL = "private, max-age=31536000, immutable"


def parse_digest(text: str) -> str:
    m = _DIGEST_RE.match(text)
    if m is None:
        raise MalformedError("blob digest must be written sha256:<64 lowercase hex>")
    return m.group(1)


def _check_upload_id(upload_id: str) -> None:
    if not _UPLOAD_RE.match(upload_id):
        raise NotFoundError("no such upload session")


def _upload_out(u: UploadSession) -> UploadOut:
    return UploadOut(upload_id=u.id, offset=u.offset, size=u.size, expires=u.expires)


def purge_expired_uploads(session: Session, ctx: AppContext) -> int:
    """Delete abandoned upload sessions and their partial data; returns how many."""
    now = ctx.clock()
    ids = expired_uploads(session, now)
    for upload_id in ids:
        ctx.storage.discard_upload(upload_id)
    delete_uploads(session, ids)
    return len(ids)


def _load_upload(
    session: Session, ctx: AppContext, caller: Caller, upload_id: str
) -> UploadSession:
    _check_upload_id(upload_id)
    upload = session.get(UploadSession, upload_id)
    if upload is None or upload.principal_id != caller.principal_id:
        raise NotFoundError("no such upload session")
    if ctx.clock() >= upload.expires:
        ctx.storage.discard_upload(upload_id)
        session.delete(upload)
        session.commit()
        raise NotFoundError("upload session expired", hint="start a new upload")
    return upload


@router.post("/uploads", status_code=201, dependencies=[JsonBody])
def start_upload(
    body: UploadIn,
    caller: InstitutionDep,
    session: SessionDep,
    ctx: ContextDep,
    response: Response,
) -> UploadOut:
    if body.size > ctx.settings.max_blob_bytes:
        raise TooLargeError(
            f"blob of {body.size} bytes is over the limit of {ctx.settings.max_blob_bytes}"
        )
    namespace = owned_namespace(session, caller, body.namespace)
    purge_expired_uploads(session, ctx)
    now = ctx.clock()
    check_upload_quota(session, ctx.settings, caller.principal_id, body.size, now)
    upload = UploadSession(
        id=secrets.token_hex(16),
        principal_id=caller.principal_id,
        namespace_id=namespace.id,
        size=body.size,
        offset=0,
        created=now,
        expires=upload_expiry(ctx.settings, now, now),
    )
    ctx.storage.start_upload(upload.id)
    session.add(upload)
    session.commit()
    response.headers["Location"] = f"/v1/uploads/{upload.id}"
    return _upload_out(upload)


@router.get("/uploads/{upload_id}")
def upload_status(
    upload_id: str, caller: PrincipalDep, session: SessionDep, ctx: ContextDep
) -> UploadOut:
    return _upload_out(_load_upload(session, ctx, caller, upload_id))


def _begin_append(ctx: AppContext, caller: Caller, upload_id: str, offset: int) -> UploadSession:
    with ctx.db.session() as session:
        upload = _load_upload(session, ctx, caller, upload_id)
        session.commit()
    if offset != upload.offset:
        raise UploadOffsetError(
            f"upload is at offset {upload.offset}, not {offset}", offset=upload.offset
        )
    return upload


def _finish_append(ctx: AppContext, upload_id: str, old: int, new: int) -> UploadSession:
    with ctx.db.session() as session:
        moved = advance_upload(session, upload_id, old=old, new=new)
        touched = session.get(UploadSession, upload_id)
        if moved and touched is not None:  # an idle session expires; one in use lives on
            touched.expires = upload_expiry(ctx.settings, touched.created, ctx.clock())
        session.commit()
        upload = session.get(UploadSession, upload_id)
        if upload is None:
            raise NotFoundError("upload session vanished while writing")
        if not moved:
            raise UploadOffsetError(
                f"another request moved the upload to offset {upload.offset}",
                offset=upload.offset,
            )
        return upload


@router.patch(
    "/uploads/{upload_id}",
    status_code=202,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
        "parameters": [
            {
                "name": "Upload-Offset",
                "in": "header",
                "required": True,
                "schema": {"type": "integer"},
            }
        ],
    },
)
async def append_upload(
    upload_id: str, request: Request, caller: PrincipalDep, ctx: ContextDep
) -> UploadOut:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/octet-stream":
        raise UnsupportedMediaTypeError(
            f"upload chunks are application/octet-stream, not {media or '(none)'!r}"
        )
    offset = require_uint(request.headers.get("upload-offset", ""), "header Upload-Offset")
    upload = await run_in_threadpool(_begin_append, ctx, caller, upload_id, offset)
    room = upload.size - offset
    declared = request.headers.get("content-length", "")
    if (ascii_uint(declared) or 0) > room:
        raise TooLargeError(
            f"{declared} bytes at offset {offset} go past the declared size {upload.size}"
        )
    writer = await run_in_threadpool(ctx.storage.open_writer, upload_id, offset)
    written = 0
    buffer = bytearray()
    try:
        async for chunk in request.stream():
            if written + len(buffer) + len(chunk) > room:
                raise TooLargeError(f"the chunk goes past the declared size {upload.size}")
            buffer += chunk
            if len(buffer) >= WRITE_BUFFER:
                await run_in_threadpool(writer.write, bytes(buffer))
                written += len(buffer)
                buffer.clear()
        if buffer:
            await run_in_threadpool(writer.write, bytes(buffer))
            written += len(buffer)
    finally:
        await run_in_threadpool(writer.close)
    done = await run_in_threadpool(_finish_append, ctx, upload_id, offset, offset + written)
    return _upload_out(done)


@router.put("/uploads/{upload_id}", status_code=201)
def finish_upload(
    upload_id: str,
    digest: Annotated[str, Query(description="sha256:<hex> of the whole blob")],
    caller: PrincipalDep,
    session: SessionDep,
    ctx: ContextDep,
    response: Response,
) -> BlobOut:
    hexdigest = parse_digest(digest)
    upload = _load_upload(session, ctx, caller, upload_id)
    if upload.offset != upload.size:
        raise UploadOffsetError(
            f"upload has {upload.offset} of {upload.size} bytes", offset=upload.offset
        )
    try:
        ctx.storage.finalize(upload_id, hexdigest, upload.size)
    except DigestMismatchError:
        session.delete(upload)
        session.commit()
        raise
    size, namespace = upload.size, session.get(Namespace, upload.namespace_id)
    assert namespace is not None  # foreign key
    _store(session, ctx, upload_id, namespace.id, hexdigest, size)
    response.headers["Location"] = f"/v1/namespaces/{namespace.name}/blobs/sha256:{hexdigest}"
    return BlobOut(digest=f"sha256:{hexdigest}", size=size)


def _store(
    session: Session, ctx: AppContext, upload_id: str, namespace_id: int, hexdigest: str, size: int
) -> None:
    """End the session; record the blob (once) and its link into the namespace. A concurrent
    upload of the same bytes, into this namespace or another, is fine."""
    for attempt in range(2):
        delete_uploads(session, [upload_id])
        now = ctx.clock()
        if session.get(Blob, hexdigest) is None:
            session.add(Blob(digest=hexdigest, size=size, created=now))
        if session.get(NamespaceBlob, (namespace_id, hexdigest)) is None:
            session.add(NamespaceBlob(namespace_id=namespace_id, digest=hexdigest, created=now))
        try:
            session.commit()
        except IntegrityError:  # another request stored the blob or the link first
            session.rollback()
            if attempt:
                raise
        else:
            return


@router.delete("/uploads/{upload_id}", status_code=204, response_class=Response)
def cancel_upload(
    upload_id: str, caller: PrincipalDep, session: SessionDep, ctx: ContextDep
) -> Response:
    upload = _load_upload(session, ctx, caller, upload_id)
    ctx.storage.discard_upload(upload_id)
    session.delete(upload)
    session.commit()
    return Response(status_code=204)


# --- reading ----------------------------------------------------------------------------------


def _blob_headers(hexdigest: str) -> dict[str, str]:
    return {
        "ETag": f'"sha256:{hexdigest}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": BLOB_CACHE_CONTROL,
    }


def _refused(
    ctx: AppContext, read: ReadFacts, dataset: str, hexdigest: str, exc: OstracaError
) -> None:
    """Audit a refused read into the dataset it named (committed before the refusal is
    answered)."""
    ctx.metrics.decisions.labels("refused").inc()
    facts = read.facts
    if read.caller is None or facts is None:  # anonymous, or no such dataset: nothing to audit
        return
    audit_writer(ctx.db.engine).record(
        now=ctx.clock(),
        action="read_refused",
        principal=read.caller.keyid,
        dataset=dataset,
        version=facts.versions[0][0] if facts.versions else None,
        grant_id=None,
        detail=f"sha256:{hexdigest}: {exc.code}: {exc.message}",
    )


_DB_SLOTS = threading.BoundedSemaphore(8)
"""At most this many blob authorizations use a pooled connection at once per process: below
the engine's pool size, so bursts queue here instead of opening and closing overflow
connections (a new SQLite connection costs its PRAGMAs)."""


def _authorize(
    ctx: AppContext, request: Request, dataset: str, hexdigest: str
) -> tuple[Caller, Decision, int]:
    """Authorize on facts read at request time; a refusal is audited before it is raised."""
    with _DB_SLOTS:
        read = lookup_read(ctx.db.engine, _bearer(request), dataset, hexdigest, ctx.clock())
    try:
        caller, decision, size = decide_read(read, dataset, hexdigest, ctx.clock())
    except (AccessDeniedError, NotFoundError) as exc:
        _refused(ctx, read, dataset, hexdigest, exc)
        raise
    ctx.metrics.decisions.labels("allowed").inc()
    return caller, decision, size


def _head(ctx: AppContext, request: Request, dataset: str, hexdigest: str) -> int:
    """The size, if the caller may read the blob; any refusal is a 404 (no oracle)."""
    try:
        return _authorize(ctx, request, dataset, hexdigest)[2]
    except AccessDeniedError as exc:
        raise not_listed(dataset, hexdigest) from exc


def _size_response(hexdigest: str, size: int) -> Response:
    headers = _blob_headers(hexdigest)
    headers["Content-Length"] = str(size)
    return Response(status_code=200, headers=headers, media_type="application/octet-stream")


@router.head("/datasets/{ns}/{name}/blobs/{digest}", response_class=Response, responses={404: {}})
async def head_blob(ns: str, name: str, digest: str, request: Request, ctx: ContextDep) -> Response:
    dataset, hexdigest = dataset_name(ns, name), parse_digest(digest)
    size = await run_in_threadpool(_head, ctx, request, dataset, hexdigest)
    return _size_response(hexdigest, size)


@router.head("/namespaces/{ns}/blobs/{digest}", response_class=Response, responses={404: {}})
def head_namespace_blob(
    ns: str, digest: str, caller: InstitutionDep, session: SessionDep
) -> Response:
    """Whether the caller uploaded this blob into its namespace ``ns`` (to skip re-sending it):
    404 otherwise, whoever else holds the same bytes, and for another institution's namespace."""
    hexdigest = parse_digest(digest)
    namespace = get_namespace(session, ns)
    sizes = {}
    if namespace.owner_id == caller.principal_id:
        sizes = namespace_blob_sizes(session, namespace.id, [hexdigest])
    if hexdigest not in sizes:
        raise NotFoundError(f"namespace {ns} has no blob sha256:{hexdigest} of yours")
    return _size_response(hexdigest, sizes[hexdigest])


def _stream(
    ctx: AppContext, hexdigest: str, rng: ByteRange, grant_id: str | None
) -> Iterator[bytes]:
    """The body of a large read; runs on worker threads, one block per hop."""
    since_check = 0
    for block in ctx.storage.read_range(hexdigest, rng.start, rng.end):
        if grant_id is not None and since_check >= RECHECK_BYTES:
            with ctx.db.read_session() as session:
                if not grant_still_valid(session, grant_id, ctx.clock()):
                    raise AccessDeniedError("the grant was revoked or expired during the read")
            since_check = 0
        since_check += len(block)
        ctx.metrics.blob_bytes.inc(len(block))
        yield block


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


def _plan_get(ctx: AppContext, request: Request, dataset: str, hexdigest: str) -> _Plan | Response:
    caller, decision, size = _authorize(ctx, request, dataset, hexdigest)
    headers = _blob_headers(hexdigest)
    if request.headers.get("if-none-match") == headers["ETag"]:
        return _Plan(headers, 304, ByteRange(0, -1, False), decision, False, None)
    rng = parse_range(request.headers.get("range"), size) if size else ByteRange(0, -1, False)
    if size and ctx.settings.blob_delivery != "stream":  # the bytes bypass the registry
        return offloaded_read(
            ctx,
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
    body = None
    if rng.end - rng.start + 1 <= SMALL_BODY:
        body = b"".join(ctx.storage.read_range(hexdigest, rng.start, rng.end))
        ctx.metrics.blob_bytes.inc(len(body))
    return _Plan(headers, 206 if rng.partial else 200, rng, decision, True, body)


@router.get(
    "/datasets/{ns}/{name}/blobs/{digest}",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "Blob bytes"},
        206: {"content": {"application/octet-stream": {}}, "description": "One byte range"},
    },
)
async def get_blob(ns: str, name: str, digest: str, request: Request, ctx: ContextDep) -> Response:
    """Authorize against the dataset named (token + one query, on a worker thread), have the
    audit event committed, and only then send bytes: a small range in one response, a large
    one streamed with the grant re-checked every ``RECHECK_BYTES``."""
    dataset, hexdigest = dataset_name(ns, name), parse_digest(digest)
    plan = await run_in_threadpool(_plan_get, ctx, request, dataset, hexdigest)
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
    return StreamingResponse(
        _stream(ctx, hexdigest, plan.rng, plan.decision.grant_id),
        status_code=plan.status,
        headers=plan.headers,
        media_type="application/octet-stream",
    )
