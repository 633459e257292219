"""Content-addressed blobs after the OCI distribution spec: resumable chunked uploads into a
namespace (start → append at offset → finish with digest, re-hashed) and HEAD in the namespace
for dedup. Reads through a dataset (``/v1/datasets/{ns}/{name}/blobs/{digest}``) are
``routes_reads``.

Bytes are stored once whoever uploads them; access is per namespace (``namespace_blobs``): a
blob becomes listable by a namespace's manifests only when its owner has sent the bytes into it,
so knowing a digest is never enough."""

from __future__ import annotations

import re
import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ostraca.protocol_spec.errors import (
    DigestMismatchError,
    NotFoundError,
    TooLargeError,
    UnsupportedMediaTypeError,
)
from ostraca.protocol_spec.wire import (
    BlobOut,
    UploadIn,
    UploadOut,
)

from .db import Blob, Namespace, NamespaceBlob, UploadSession
from .deps import (
    AppContext,
    Caller,
    ContextDep,
    InstitutionDep,
    JsonBody,
    PrincipalDep,
    SessionDep,
)
from .parsing import ascii_uint, require_uint
from .problems import UploadOffsetError
from .quotas import check_upload_quota, upload_expiry
from .repo import (
    advance_upload,
    delete_uploads,
    expired_uploads,
    get_namespace,
    namespace_blob_sizes,
    owned_namespace,
)
from .routes_reads import parse_digest, size_response

router = APIRouter(prefix="/v1", tags=["blobs"])

_UPLOAD_RE = re.compile(r"^[0-9a-f]{32}$")
WRITE_BUFFER = 1024 * 1024


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
    return size_response(hexdigest, sizes[hexdigest])
