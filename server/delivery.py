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

from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from fastapi import Response

from ostraca.protocol_spec.errors import UnavailableError

from .access import Decision
from .audit import AuditAction, audit_writer
from .deps import AppContext
from .settings import Settings
from .storage import BlobStorage, open_storage
from .storage_s3 import S3Storage


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
    principal: str,
    decision: Decision,
    hexdigest: str,
    start: int,
    end: int,
    size: int,
    headers: dict[str, str],
) -> Response:
    """The answer to an authorized GET of bytes ``start``..``end`` of a ``size``-byte blob
    when another party sends the bytes; its audit event is committed before it returns."""
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
        now=now,
        action=action,
        principal=principal,
        dataset=decision.dataset,
        version=decision.version,
        grant_id=decision.grant_id,
        detail=what,
    )
    return response
