"""Upload quotas and upload-session lifetimes.

A principal may hold at most ``OSTRACA_MAX_OPEN_UPLOAD_BYTES`` in open upload sessions,
counted by their declared sizes (what a session may still grow to, so lazily filled sessions
cannot pile up). A session expires ``OSTRACA_UPLOAD_IDLE_SECONDS`` after it was last
touched, and never later than ``OSTRACA_UPLOAD_TTL_SECONDS`` after it was started; expired
sessions and their partial data are purged (``routes_blobs.purge_expired_uploads``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ostraca.protocol_spec.errors import TooLargeError

from .db import UploadSession
from .settings import Settings


def open_upload_bytes(session: Session, principal_id: int, now: datetime) -> int:
    """The declared bytes of ``principal_id``'s upload sessions that have not expired."""
    total = session.scalar(
        select(func.coalesce(func.sum(UploadSession.size), 0)).where(
            UploadSession.principal_id == principal_id, UploadSession.expires > now
        )
    )
    return int(total or 0)


def check_upload_quota(
    session: Session, settings: Settings, principal_id: int, size: int, now: datetime
) -> None:
    """413 ``too_large`` if a new session of ``size`` bytes would put ``principal_id`` over
    its quota of bytes in open upload sessions."""
    quota = settings.max_open_upload_bytes
    held = open_upload_bytes(session, principal_id, now)
    if held + size > quota:
        raise TooLargeError(
            f"{held} bytes are already in open upload sessions; {size} more would pass this "
            f"principal's quota of {quota}",
            hint="finish or cancel (DELETE /v1/uploads/{id}) the open uploads first",
        )


def upload_expiry(settings: Settings, created: datetime, now: datetime) -> datetime:
    """When a session started at ``created`` and touched at ``now`` expires."""
    idle = now + timedelta(seconds=settings.upload_idle_seconds)
    return min(idle, created + timedelta(seconds=settings.upload_ttl_seconds))
