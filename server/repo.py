"""Data access shared by the routes. Functions take the session explicitly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ostraca.protocol_spec.canonical import parse_canonical
from ostraca.protocol_spec.envelope import Envelope
from ostraca.protocol_spec.errors import (
    AccessDeniedError,
    ConflictError,
    NotFoundError,
    PayloadTypeError,
    UntrustedKeyError,
)
from ostraca.protocol_spec.keys import VerifyKey
from ostraca.protocol_spec.models import DatasetManifest, PublicKey, Statement, split_dataset
from ostraca.protocol_spec.verify import ChainHead, Verified
from ostraca.protocol_spec.wire import (
    KeyOut,
    PrincipalOut,
)

from .db import (
    AuditEvent,
    AuthToken,
    Blob,
    Dataset,
    Namespace,
    Principal,
    PrincipalKey,
    Version,
    VersionBlob,
)
from .deps import Caller

S = TypeVar("S", bound=Statement)


def claimed_statement(body: bytes, model: type[S]) -> tuple[Envelope, S]:
    """An envelope and the statement it *claims* to carry, NOT yet verified.

    Only for finding which keys to trust (the dataset's owner, the grant to revoke, the key to
    rotate); the route then verifies the envelope with those keys before acting on it.
    """
    envelope = Envelope.from_json(body)
    if envelope.payload_type != model.PAYLOAD_TYPE:
        raise PayloadTypeError(
            f"expected payloadType {model.PAYLOAD_TYPE!r}, got {envelope.payload_type!r}"
        )
    return envelope, model.from_json_obj(parse_canonical(envelope.payload))


@contextmanager
def store_or_conflict(session: Session, conflict: str) -> Iterator[None]:
    """Flush the writes made in the block; if they break a unique constraint (the thing exists
    already, or a concurrent request stored it first), roll back and raise
    :class:`ConflictError` with the message ``conflict``."""
    try:
        yield
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(conflict) from exc


def ts(value: datetime) -> datetime:
    """Drop sub-second precision (API timestamps are whole seconds)."""
    return value.replace(microsecond=0)


def envelope_json(data: bytes) -> dict[str, Any]:
    """A stored envelope as the JSON object clients receive inside list responses."""
    return cast("dict[str, Any]", json.loads(data))


def principal_keys(
    session: Session, principal_id: int, *, rotated: bool = False
) -> list[PrincipalKey]:
    """The principal's unrevoked keys: the active ones (oldest first); with ``rotated``, then
    the rotated ones (most recently rotated first)."""
    query = select(PrincipalKey).where(
        PrincipalKey.principal_id == principal_id, PrincipalKey.revoked.is_(None)
    )
    if not rotated:
        query = query.where(PrincipalKey.rotated.is_(None))
    rows = list(session.scalars(query.order_by(PrincipalKey.created, PrincipalKey.keyid)))
    active = [k for k in rows if k.rotated is None]
    # Rotated keys newest first: walk the chain back from the active keys (times may tie).
    by_id = {k.keyid: k for k in rows}
    old: list[PrincipalKey] = []
    for k in active:
        cur = by_id.get(k.replaces or "")
        while cur is not None and cur.rotated is not None and cur not in old:
            old.append(cur)
            cur = by_id.get(cur.replaces or "")
    old += [k for k in reversed(rows) if k.rotated is not None and k not in old]
    return active + old


def verify_keys(session: Session, principal_id: int) -> dict[str, VerifyKey]:
    """The principal's active keys: the ones that may sign new statements."""
    return {k.keyid: VerifyKey.from_b64(k.public) for k in principal_keys(session, principal_id)}


def rotated_key_error(key: PrincipalKey, successor: str | None) -> UntrustedKeyError:
    when = "" if key.rotated is None else f" at {key.rotated:%Y-%m-%dT%H:%M:%SZ}"
    to = "" if successor is None else f" to {successor[:16]}…"
    return UntrustedKeyError(
        f"key {key.keyid[:16]}… was rotated{to}{when}: it still verifies what it signed "
        "before, but it can no longer sign new statements",
        hint="sign with the active key (`ostraca rotate-key` moved your identity file to it)",
    )


def signing_keys(session: Session, principal_id: int, envelope: Envelope) -> dict[str, VerifyKey]:
    """The keys trusted to sign a new statement of the principal: its active keys.

    An envelope signed by none of them but by one of the principal's rotated keys is refused
    here, with an error that says so (rather than a bare ``untrusted_key`` later).
    """
    rows = principal_keys(session, principal_id, rotated=True)
    active = {k.keyid: VerifyKey.from_b64(k.public) for k in rows if k.rotated is None}
    signers = {s.keyid for s in envelope.signatures}
    if not signers & active.keys():
        for k in rows:
            if k.keyid in signers:
                successor = next((r.keyid for r in rows if r.replaces == k.keyid), None)
                raise rotated_key_error(k, successor)
    return active


def key_outs(session: Session, principal_id: int) -> list[KeyOut]:
    """Active and rotated keys of a principal, with their status."""
    rows = principal_keys(session, principal_id, rotated=True)
    successor = {k.replaces: k.keyid for k in rows if k.replaces is not None}
    return [
        KeyOut(
            keyid=k.keyid,
            public=k.public,
            status="active" if k.rotated is None else "rotated",
            created=ts(k.created),
            rotated=None if k.rotated is None else ts(k.rotated),
            successor=successor.get(k.keyid),
        )
        for k in rows
    ]


def principal_out(session: Session, principal: Principal) -> PrincipalOut:
    keys = key_outs(session, principal.id)
    return PrincipalOut(
        keyid=principal.keyid,
        name=principal.name,
        kind=cast("Literal['institution', 'researcher']", principal.kind),
        affiliation=principal.affiliation,
        keys=[PublicKey(keyid=k.keyid, public=k.public) for k in keys if k.status == "active"],
        rotated_keys=[k for k in keys if k.status == "rotated"],
        created=ts(principal.created),
    )


def retire_key(session: Session, keyid: str, now: datetime) -> bool:
    """Mark an active key rotated at ``now``; ``False`` if it is not active (any more)."""
    handed_over = session.execute(
        update(PrincipalKey)
        .where(
            PrincipalKey.keyid == keyid,
            PrincipalKey.rotated.is_(None),
            PrincipalKey.revoked.is_(None),
        )
        .values(rotated=now)
        .returning(PrincipalKey.keyid)
    ).first()
    return handed_over is not None


def revoke_tokens(session: Session, principal_id: int, now: datetime) -> None:
    """End every open session (bearer token) of the principal."""
    session.execute(
        update(AuthToken)
        .where(AuthToken.principal_id == principal_id, AuthToken.revoked.is_(None))
        .values(revoked=now)
    )


def published_datasets(session: Session, principal_id: int) -> list[str]:
    """Names of the datasets in the principal's namespaces, sorted."""
    return list(
        session.scalars(
            select(Dataset.name)
            .join(Namespace, Namespace.id == Dataset.namespace_id)
            .where(Namespace.owner_id == principal_id)
            .order_by(Dataset.name)
        )
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


def latest_head(session: Session, dataset: Dataset) -> ChainHead:
    """The dataset's latest version, as the head its next version must link to (M8)."""
    digest = session.scalars(
        select(Version.digest).where(
            Version.dataset_id == dataset.id, Version.version == dataset.latest_version
        )
    ).one()
    return ChainHead(dataset=dataset.name, version=dataset.latest_version, digest=digest)


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


# --- datasets and versions ---------------------------------------------------------------------

ManifestBlobs = dict[str, tuple[Literal["shard", "chunks"], int]]
"""The blobs a manifest names: digest → (kind, size)."""


def search_datasets(
    session: Session, search: str, *, limit: int, offset: int
) -> tuple[list[Dataset], int]:
    """A page of datasets whose name or description contains ``search`` (case-insensitive),
    by name, and how many match in all."""
    query = select(Dataset)
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped.lower()}%"
        query = query.where(
            or_(
                func.lower(Dataset.name).like(pattern, escape="\\"),
                func.lower(Dataset.description).like(pattern, escape="\\"),
            )
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Dataset.name).limit(limit).offset(offset))
    return list(rows), total


def versions_of(session: Session, dataset: Dataset) -> list[Version]:
    return list(
        session.scalars(
            select(Version).where(Version.dataset_id == dataset.id).order_by(Version.version)
        )
    )


def manifest_envelope(session: Session, dataset: Dataset, version: int) -> bytes | None:
    """The stored manifest envelope of ``version``, byte for byte."""
    return session.scalars(
        select(Version.envelope).where(Version.dataset_id == dataset.id, Version.version == version)
    ).first()


def blob_sizes(session: Session, digests: list[str]) -> dict[str, int]:
    """The stored size of each of ``digests`` the registry holds (queried 500 at a time)."""
    present: dict[str, int] = {}
    for i in range(0, len(digests), 500):
        batch = digests[i : i + 500]
        rows = session.execute(select(Blob.digest, Blob.size).where(Blob.digest.in_(batch)))
        present.update((d, n) for d, n in rows)
    return present


def store_version(
    session: Session,
    *,
    namespace: Namespace,
    dataset: Dataset | None,
    verified: Verified[DatasetManifest],
    envelope: bytes,
    blobs: ManifestBlobs,
    now: datetime,
) -> None:
    """Add a verified manifest as the dataset's latest version (creating the dataset at its
    first version), with the blobs it names; the caller flushes and commits."""
    m = verified.statement
    if dataset is None:
        dataset = Dataset(name=m.dataset, namespace_id=namespace.id, created=now)
        session.add(dataset)
    dataset.latest_version = m.version
    dataset.description = m.description
    dataset.license = m.license
    dataset.terms = m.terms
    dataset.terms_sha256 = m.terms_sha256
    dataset.columns = [{"name": c.name, "type": c.type} for c in m.columns]
    dataset.total_rows = m.total_rows
    dataset.total_bytes = m.total_bytes
    dataset.publisher = m.publisher
    dataset.updated = now
    session.flush()
    version = Version(
        dataset_id=dataset.id,
        version=m.version,
        digest=verified.digest,
        envelope=envelope,
        created=m.created,
        published=now,
        total_rows=m.total_rows,
        total_bytes=m.total_bytes,
        shards=len(m.shards),
    )
    session.add(version)
    session.flush()
    session.add_all(
        VersionBlob(version_id=version.id, digest=d, kind=kind, size=size)
        for d, (kind, size) in blobs.items()
    )


def audit_events(session: Session, dataset: str, *, after: int, limit: int) -> list[AuditEvent]:
    """The dataset's audit events after id ``after``, oldest first."""
    return list(
        session.scalars(
            select(AuditEvent)
            .where(AuditEvent.dataset == dataset, AuditEvent.id > after)
            .order_by(AuditEvent.id)
            .limit(limit)
        )
    )
