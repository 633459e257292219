"""Who may read a blob: the grant checks of ``verify_grant`` (SPEC.md 5.2) applied to the
registry's index of verified grants, on every request.

A blob is readable by the institution owning a dataset that contains it, or by a grantee of a
grant that names such a dataset, covers a version containing the blob, is inside its validity
window and is not revoked. The grant's signature was verified when it was stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ostraca.protocol_spec.errors import (
    AccessDeniedError,
    AuthenticationError,
    ExpiredError,
    NotFoundError,
    NotYetValidError,
    RevokedError,
    ScopeError,
)

from .db import Dataset, GrantRow, Namespace, RevocationRow, Version, VersionBlob
from .deps import Caller


@dataclass(frozen=True, slots=True)
class Decision:
    """An allowed read: which dataset version it is attributed to, through which grant."""

    dataset: str
    version: int
    grant_id: str | None
    """``None`` when the reader is the owning institution."""


@dataclass(frozen=True, slots=True)
class _Holder:
    dataset_id: int
    dataset: str
    version: int
    owner_id: int


def holders(session: Session, digest: str) -> list[_Holder]:
    """Every published dataset version that contains the blob."""
    rows = session.execute(
        select(Dataset.id, Dataset.name, Version.version, Namespace.owner_id)
        .join(Version, Version.dataset_id == Dataset.id)
        .join(VersionBlob, VersionBlob.version_id == Version.id)
        .join(Namespace, Namespace.id == Dataset.namespace_id)
        .where(VersionBlob.digest == digest)
        .order_by(Dataset.name, Version.version.desc())
    )
    return [_Holder(dataset_id=a, dataset=b, version=c, owner_id=d) for a, b, c, d in rows]


_RANK: dict[type[AccessDeniedError], int] = {
    ScopeError: 1,
    NotYetValidError: 2,
    ExpiredError: 3,
    RevokedError: 4,
}


def authorize_blob(session: Session, caller: Caller | None, digest: str, now: datetime) -> Decision:
    """The decision for reading blob ``digest``; raises with the most telling reason if refused.

    Raises :class:`NotFoundError` when no published version contains the blob (anonymous
    callers too: existence is not secret once published, metadata is public).
    """
    found = holders(session, digest)
    if not found:
        raise NotFoundError(f"no published dataset contains blob sha256:{digest}")
    if caller is None:
        raise AuthenticationError("reading blobs needs a bearer token", hint="ostraca login")
    for h in found:
        if h.owner_id == caller.principal_id:
            return Decision(dataset=h.dataset, version=h.version, grant_id=None)
    by_dataset: dict[int, list[_Holder]] = {}
    for h in found:
        by_dataset.setdefault(h.dataset_id, []).append(h)
    grants = session.execute(
        select(GrantRow, RevocationRow.grant_id)
        .outerjoin(RevocationRow, RevocationRow.grant_id == GrantRow.grant_id)
        .where(GrantRow.grantee_id == caller.principal_id, GrantRow.dataset_id.in_(by_dataset))
        .order_by(GrantRow.created.desc())
    )
    worst: AccessDeniedError | None = None
    for grant, revoked in grants:
        for h in by_dataset[grant.dataset_id]:
            try:
                check_grant(grant, version=h.version, now=now, revoked=revoked is not None)
            except AccessDeniedError as exc:
                if worst is None or _RANK.get(type(exc), 0) > _RANK.get(type(worst), 0):
                    worst = exc
                continue
            return Decision(dataset=h.dataset, version=h.version, grant_id=grant.grant_id)
    if worst is not None:
        raise worst
    first = found[0].dataset
    raise AccessDeniedError(
        f"no grant of yours covers {first}",
        hint=f"ostraca request {first} --purpose '...'",
    )


def check_grant(grant: GrantRow, *, version: int, now: datetime, revoked: bool) -> None:
    """G8, G10, G11, G12 of SPEC.md 5.2, in that order, on a stored (already verified) grant."""
    # G8: it covers this version.
    if version < grant.min_version or (
        grant.max_version is not None and version > grant.max_version
    ):
        upper = "" if grant.max_version is None else str(grant.max_version)
        raise ScopeError(f"grant covers versions {grant.min_version}..{upper}, not {version}")
    # G10: it is valid already.
    if now < grant.not_before:
        raise NotYetValidError(f"grant is valid from {grant.not_before:%Y-%m-%dT%H:%M:%SZ}")
    # G11: it has not expired.
    if now >= grant.expires:
        raise ExpiredError(f"grant expired at {grant.expires:%Y-%m-%dT%H:%M:%SZ}")
    # G12: it is not revoked.
    if revoked:
        raise RevokedError(f"grant {grant.grant_id[:16]}… has been revoked")


def grant_still_valid(session: Session, grant_id: str, now: datetime) -> bool:
    """Re-checked while a long response streams: not revoked, not expired since it started."""
    expires = session.scalar(select(GrantRow.expires).where(GrantRow.grant_id == grant_id))
    revoked = session.get(RevocationRow, grant_id) is not None
    return expires is not None and not revoked and now < expires
