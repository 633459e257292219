"""Data access for access requests, grants and revocations. Functions take the session
explicitly; the routes in ``routes_access`` verify statements before calling them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session

from ostraca.protocol_spec.canonical import parse_canonical
from ostraca.protocol_spec.envelope import Envelope
from ostraca.protocol_spec.errors import ConflictError, MalformedError, NotFoundError
from ostraca.protocol_spec.models import AccessGrant, DatasetManifest

from .db import AccessRequestRow, Dataset, GrantRow, Namespace
from .deps import Caller
from .repo import manifest_envelope

RequestStatus = Literal["pending", "granted", "denied"]


def latest_manifest(session: Session, dataset: Dataset) -> DatasetManifest:
    """The dataset's latest manifest (verified when it was published)."""
    stored = manifest_envelope(session, dataset, dataset.latest_version)
    assert stored is not None
    return DatasetManifest.from_json_obj(parse_canonical(Envelope.from_json(stored).payload))


def check_grant_groups(grant: AccessGrant, manifest: DatasetManifest) -> None:
    """The grant's column limits are ones the registry enforces: it names only column groups
    the dataset has, and on a dataset with column groups its ``columns`` (if any) are exactly
    the columns of the groups it covers (the registry serves whole groups, not columns)."""
    groups = manifest.group_columns()
    unknown = sorted(set(grant.groups or []) - set(groups))
    if unknown:
        raise MalformedError(
            f"{manifest.dataset} has no column group(s) {', '.join(unknown)} "
            f"(groups: {', '.join(groups)})"
        )
    if manifest.column_groups is None or grant.columns is None:
        return
    if manifest.groups_for(grant.columns) != [g for g in groups if g in (grant.groups or groups)]:
        raise MalformedError(
            f"the columns of a grant on {manifest.dataset} must be those of the groups it covers"
        )


def _visible_requests(caller: Caller) -> Select[AccessRequestRow]:
    """Requests the caller made, or made for a dataset the caller publishes."""
    return (
        select(AccessRequestRow)
        .join(Dataset, Dataset.id == AccessRequestRow.dataset_id)
        .join(Namespace, Namespace.id == Dataset.namespace_id)
        .where(
            or_(
                AccessRequestRow.requester_id == caller.principal_id,
                Namespace.owner_id == caller.principal_id,
            )
        )
    )


def visible_requests(
    session: Session, caller: Caller, *, dataset: str | None, status: RequestStatus | None
) -> list[AccessRequestRow]:
    query = _visible_requests(caller)
    if dataset is not None:
        query = query.where(Dataset.name == dataset)
    if status is not None:
        query = query.where(AccessRequestRow.status == status)
    order = (AccessRequestRow.created, AccessRequestRow.request_id)
    return list(session.scalars(query.order_by(*order)))


def find_request(session: Session, caller: Caller, request_id: str) -> AccessRequestRow:
    row = session.scalars(
        _visible_requests(caller).where(AccessRequestRow.request_id == request_id)
    ).first()
    if row is None:
        raise NotFoundError(f"no request {request_id[:64]} of yours or for your datasets")
    return row


def decide_request(
    session: Session,
    request_id: str,
    *,
    status: Literal["granted", "denied"],
    now: datetime,
    reason: str | None = None,
    grant_id: str | None = None,
) -> None:
    """Mark a pending request decided; exactly once (a concurrent or earlier decision finds it
    decided already: the transaction is rolled back and :class:`ConflictError` raised)."""
    values: dict[str, object] = {"status": status, "decided": now}
    if reason is not None:
        values["reason"] = reason
    if grant_id is not None:
        values["grant_id"] = grant_id
    changed = session.execute(
        update(AccessRequestRow)
        .where(AccessRequestRow.request_id == request_id, AccessRequestRow.status == "pending")
        .values(values)
        .returning(AccessRequestRow.request_id)
    ).first()
    if changed is None:
        session.rollback()
        raise ConflictError(f"request {request_id} was already decided")


def _visible_grants(caller: Caller) -> Select[GrantRow]:
    """Grants the caller issued or received."""
    return select(GrantRow).where(
        or_(
            GrantRow.publisher_id == caller.principal_id, GrantRow.grantee_id == caller.principal_id
        )
    )


def visible_grants(session: Session, caller: Caller, *, dataset: str | None) -> list[GrantRow]:
    query = _visible_grants(caller)
    if dataset is not None:
        query = query.join(Dataset, Dataset.id == GrantRow.dataset_id).where(
            Dataset.name == dataset
        )
    return list(session.scalars(query.order_by(GrantRow.created, GrantRow.grant_id)))


def find_grant(session: Session, caller: Caller, grant_id: str) -> GrantRow:
    row = session.scalars(_visible_grants(caller).where(GrantRow.grant_id == grant_id)).first()
    if row is None:
        raise NotFoundError(f"no grant {grant_id[:64]} issued by you or to you")
    return row
