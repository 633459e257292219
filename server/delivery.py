"""Who sends the bytes of an authorized blob read: the registry itself (``stream``, the
default), the object store through a short-lived pre-signed URL (``presign``), or nginx from the
local blob directory (``accel``, ``X-Accel-Redirect``). The registry authorizes and audits in
every mode; only the answer differs.

``presign``: ``307 Temporary Redirect`` to a URL for exactly the range asked for, expiring after
``OSTRACA_PRESIGN_TTL_SECONDS``. The audit event (``read_url``) names who, the dataset, the
version, the range and the expiry. A revocation takes effect within the TTL: a URL already
issued keeps working until it expires (the client asks again for every shard, and whenever a
URL has expired). ``accel``: the answer carries ``X-Accel-Redirect: <location>/<hex>``; nginx
serves the file from its ``internal`` location with ``sendfile`` and handles ``Range`` itself
(``deploy/nginx/ostraca.conf``); the audit event is the ordinary ``read``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Protocol, runtime_checkable

from fastapi import Response
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from ostraca.protocol_spec.errors import AccessDeniedError, UnavailableError

from .access import Decision, grant_still_valid
from .audit import AuditAction, audit_writer
from .deps import AppContext
from .ranges import ByteRange
from .settings import Settings
from .storage import BlobStorage, open_storage
from .storage_s3 import S3Storage
from .zerocopy import ZEROCOPY

RECHECK_BYTES = 8 * 1024 * 1024
"""While streaming on a grant, re-check revocation and expiry every this many bytes."""


@runtime_checkable
class PresigningStorage(Protocol):
    """A store that can hand out URLs for one byte range of a blob."""

    def presign_read(self, digest: str, start: int, end: int, ttl_seconds: int) -> str: ...


def open_blob_store(settings: Settings) -> BlobStorage:
    """The store ``OSTRACA_STORAGE_URL`` names; an S3 bucket is checked (reachable, these
    credentials accepted) here, so a wrong setting fails the start in one line."""
    if not settings.storage_url.startswith("s3://"):
        return open_storage(settings.storage_url)
    store = S3Storage(
        settings.storage_url,
        endpoint_url=settings.s3_endpoint_url or None,
        region=settings.s3_region or None,
        access_key_id=settings.s3_access_key_id or None,
        secret_access_key=settings.s3_secret_access_key.get_secret_value() or None,
    )
    store.check()
    return store


def offloaded_read(
    ctx: AppContext,
    *,
    connection: Any,
    principal: str,
    decision: Decision,
    hexdigest: str,
    start: int,
    end: int,
    size: int,
    headers: dict[str, str],
) -> Response:
    """The answer to an authorized GET of bytes ``start``..``end`` of a ``size``-byte blob
    when another party sends the bytes; its audit event is committed (on DBAPI ``connection``
    if this request leads the group commit) before it returns."""
    now = ctx.clock()
    what = f"sha256:{hexdigest} bytes {start}-{end}/{size}"
    if ctx.settings.blob_delivery == "accel":
        response = Response(status_code=200, media_type="application/octet-stream")
        response.headers.update(
            {k: v for k, v in headers.items() if k not in {"Content-Length", "Content-Range"}}
        )
        response.headers["X-Accel-Redirect"] = f"{ctx.settings.accel_location}/{hexdigest}"
        action: AuditAction = "read"
    else:
        storage = ctx.storage
        if not isinstance(storage, PresigningStorage):  # create_app was given another store
            raise UnavailableError("this registry's blob store cannot pre-sign URLs")
        ttl = ctx.settings.presign_ttl_seconds
        expires: datetime = now + timedelta(seconds=ttl)
        url = storage.presign_read(hexdigest, start, end, ttl)
        response = Response(
            status_code=307,
            headers={"Location": url, "Cache-Control": "no-store", "ETag": headers["ETag"]},
        )
        what, action = f"{what} until {expires.isoformat()}", "read_url"
    audit_writer(ctx.db.engine).record(
        connection=connection,
        now=now,
        action=action,
        principal=principal,
        dataset=decision.dataset,
        version=decision.version,
        grant_id=decision.grant_id,
        detail=what,
    )
    return response


class RegistryBody(Response):
    """A large read that the registry sends itself (``stream``), its grant re-checked before
    every further ``RECHECK_BYTES``: handed to the kernel segment by segment
    (``http.response.zerocopysend``, ``os.sendfile``) when ``file`` is given, which the route
    does only when the server offers that extension; else read from the store in blocks on
    worker threads and sent as body messages."""

    def __init__(
        self,
        ctx: AppContext,
        *,
        hexdigest: str,
        rng: ByteRange,
        grant_id: str | None,
        status: int,
        headers: dict[str, str],
        file: BinaryIO | None,
    ) -> None:
        super().__init__(status_code=status, headers=headers, media_type="application/octet-stream")
        self._ctx, self._hexdigest, self._rng = ctx, hexdigest, rng
        self._grant_id, self._file = grant_id, file

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            if self._file is not None:
                await self._send_file(send)
            else:
                await self._send_blocks(send, receive)
        finally:
            if self._file is not None:
                self._file.close()

    async def _send_file(self, send: Send) -> None:
        pos, stop = self._rng.start, self._rng.end + 1
        while pos < stop:
            if pos > self._rng.start:
                await self._recheck()
            count = min(RECHECK_BYTES, stop - pos)
            await send(
                {
                    "type": ZEROCOPY,
                    "file": self._file,
                    "offset": pos,
                    "count": count,
                    "more_body": pos + count < stop,
                }
            )
            self._ctx.metrics.blob_bytes.inc(count)
            self._ctx.metrics.zerocopy_bytes.inc(count)
            pos += count

    async def _send_blocks(self, send: Send, receive: Receive) -> None:
        """The body in blocks, stopped (as :class:`ClientDisconnect`) when the client goes
        away: the server's ``send`` may ignore a closed connection, so ``receive`` is watched
        for the disconnect instead of reading the rest of the blob for no one."""
        body = asyncio.ensure_future(self._stream_blocks(send))
        watch = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((body, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            body.cancel()  # a no-op when it is done; else it stops at its next block
            await asyncio.wait((body, watch))
        if body.cancelled():
            raise ClientDisconnect
        body.result()

    async def _stream_blocks(self, send: Send) -> None:
        since_check = 0
        blocks = self._ctx.storage.read_range(self._hexdigest, self._rng.start, self._rng.end)
        async for block in iterate_in_threadpool(blocks):
            if since_check >= RECHECK_BYTES:
                await self._recheck()
                since_check = 0
            since_check += len(block)
            self._ctx.metrics.blob_bytes.inc(len(block))
            await send({"type": "http.response.body", "body": block, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _recheck(self) -> None:
        if self._grant_id is not None and not await run_in_threadpool(
            _still_granted, self._ctx, self._grant_id
        ):
            raise AccessDeniedError("the grant was revoked or expired during the read")


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _still_granted(ctx: AppContext, grant_id: str) -> bool:
    return grant_still_valid(ctx.db.engine, grant_id, ctx.clock())
