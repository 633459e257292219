"""Data access shared by the routes. Functions take the session explicitly."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from ostraca.protocol_spec.errors import AccessDeniedError, NotFoundError
from ostraca.protocol_spec.keys import VerifyKey
from ostraca.protocol_spec.models import PublicKey, split_dataset

from .db import AuditEvent, Dataset, Namespace, Principal, PrincipalKey
from .deps import Caller
from .schemas import PrincipalOut, ts

AuditAction = Literal["publish", "request", "grant", "deny", "revoke", "read", "read_refused"]


def envelope_json(data: bytes) -> dict[str, Any]:
    """A stored envelope as the JSON object clients receive inside list responses."""
    return cast("dict[str, Any]", json.loads(data))


def principal_keys(session: Session, principal_id: int) -> list[PrincipalKey]:
    return list(
        session.scalars(
            select(PrincipalKey)
            .where(PrincipalKey.principal_id == principal_id, PrincipalKey.revoked.is_(None))
            .order_by(PrincipalKey.created, PrincipalKey.keyid)
        )
    )


def verify_keys(session: Session, principal_id: int) -> dict[str, VerifyKey]:
    return {k.keyid: VerifyKey.from_b64(k.public) for k in principal_keys(session, principal_id)}


def principal_out(session: Session, principal: Principal) -> PrincipalOut:
    return PrincipalOut(
        keyid=principal.keyid,
        name=principal.name,
        kind=cast("Literal['institution', 'researcher']", principal.kind),
        affiliation=principal.affiliation,
        keys=[
            PublicKey(keyid=k.keyid, public=k.public) for k in principal_keys(session, principal.id)
        ],
        created=ts(principal.created),
    )


def get_principal(session: Session, principal_id: int) -> Principal:
    principal = session.get(Principal, principal_id)
    if principal is None:
        raise NotFoundError("unknown principal")
    return principal


def principal_by_key(session: Session, keyid: str) -> Principal | None:
    return session.scalars(
        select(Principal)
        .join(PrincipalKey, PrincipalKey.principal_id == Principal.id)
        .where(PrincipalKey.keyid == keyid)
    ).first()


def get_namespace(session: Session, name: str) -> Namespace:
    ns = session.scalars(select(Namespace).where(Namespace.name == name)).first()
    if ns is None:
        raise NotFoundError(f"no namespace {name!r}", hint=f"ostraca namespace create {name}")
    return ns


def dataset_name(ns: str, name: str) -> str:
    """``ns/name`` after checking both parts (path-like names are refused as malformed)."""
    full = f"{ns}/{name}"
    split_dataset(full)
    return full


def find_dataset(session: Session, full_name: str) -> Dataset | None:
    return session.scalars(select(Dataset).where(Dataset.name == full_name)).first()


def get_dataset(session: Session, full_name: str) -> Dataset:
    ds = find_dataset(session, full_name)
    if ds is None:
        raise NotFoundError(f"no dataset {full_name}")
    return ds


def owner_of(session: Session, dataset: Dataset) -> int:
    ns = session.get(Namespace, dataset.namespace_id)
    if ns is None:  # pragma: no cover - foreign key
        raise NotFoundError("dataset without namespace")
    return ns.owner_id


def require_owner(session: Session, caller: Caller, dataset: Dataset) -> None:
    if owner_of(session, dataset) != caller.principal_id:
        raise AccessDeniedError(f"only the publisher of {dataset.name} may do this")


def audit(
    session: Session,
    *,
    now: datetime,
    action: AuditAction,
    principal: str | None,
    dataset: str | None,
    version: int | None = None,
    grant_id: str | None = None,
    detail: str = "",
) -> None:
    session.add(
        AuditEvent(
            time=now,
            action=action,
            principal=principal,
            dataset=dataset,
            version=version,
            grant_id=grant_id,
            detail=detail,
        )
    )
