"""Data access shared by the routes. Functions take the session explicitly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import Table, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ostraca.protocol_spec.canonical import parse_canonical
from ostraca.protocol_spec.envelope import Envelope
from ostraca.protocol_spec.errors import (
    AccessDeniedError,
    ConflictError,
    NotFoundError,
    PayloadTypeError,
)
from ostraca.protocol_spec.models import DatasetManifest, Statement, split_dataset
from ostraca.protocol_spec.verify import ChainHead, Verified

from .db import (
    AuditEvent,
    Blob,
    Dataset,
    Namespace,
    NamespaceBlob,
    UploadSession,
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


def get_namespace(session: Session, name: str) -> Namespace:
    ns = session.scalars(select(Namespace).where(Namespace.name == name)).first()
    if ns is None:
        raise NotFoundError(f"no namespace {name!r}", hint=f"ostraca namespace create {name}")
    return ns


def owned_namespace(session: Session, caller: Caller, name: str) -> Namespace:
    """The namespace ``name``, which must be the caller's (to upload into or publish in)."""
    namespace = get_namespace(session, name)
    if namespace.owner_id != caller.principal_id:
        raise AccessDeniedError(f"namespace {name!r} belongs to another institution")
    return namespace


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


def dataset_by_id(session: Session, dataset_id: int) -> Dataset:
    ds = session.get(Dataset, dataset_id)
    if ds is None:  # pragma: no cover - foreign key
        raise NotFoundError("no such dataset")
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

ManifestBlobs = dict[str, tuple[Literal["shard", "chunks"], int, str]]
"""The blobs a manifest names: digest → (kind, size, column group)."""


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


_IN_BATCH = 5000
"""Digests per ``IN (...)`` query: well under SQLite's 32,766 and PostgreSQL's 65,535 bound
parameters, and few round trips for a 10^5-shard manifest."""


def namespace_blob_sizes(session: Session, namespace_id: int, digests: list[str]) -> dict[str, int]:
    """The stored size of each of ``digests`` uploaded into the namespace (queried
    ``_IN_BATCH`` at a time); blobs that only other namespaces hold are absent."""
    present: dict[str, int] = {}
    conn = session.connection()  # Core rows: no ORM result machinery per row
    for i in range(0, len(digests), _IN_BATCH):
        batch = digests[i : i + _IN_BATCH]
        rows = conn.execute(
            select(Blob.digest, Blob.size)
            .join(NamespaceBlob, NamespaceBlob.digest == Blob.digest)
            .where(NamespaceBlob.namespace_id == namespace_id, Blob.digest.in_(batch))
        )
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
    # One executemany, not an ORM object per blob: a 10^5-shard manifest names 2·10^5 blobs.
    rows = [
        {"version_id": version.id, "digest": d, "kind": kind, "size": size, "group": group}
        for d, (kind, size, group) in blobs.items()
    ]
    if rows:  # Core executemany: the ORM's bulk path costs more per row than the database
        session.connection().execute(insert(cast("Table", VersionBlob.__table__)), rows)


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


# --- upload sessions ---------------------------------------------------------------------------


def expired_uploads(session: Session, now: datetime) -> list[str]:
    return list(session.scalars(select(UploadSession.id).where(UploadSession.expires <= now)))


def delete_uploads(session: Session, upload_ids: list[str]) -> None:
    if upload_ids:
        session.execute(delete(UploadSession).where(UploadSession.id.in_(upload_ids)))


def advance_upload(session: Session, upload_id: str, *, old: int, new: int) -> bool:
    """Move the upload's offset from ``old`` to ``new``; ``False`` if another request moved it
    first (compare-and-set)."""
    moved = session.execute(
        update(UploadSession)
        .where(UploadSession.id == upload_id, UploadSession.offset == old)
        .values(offset=new)
        .returning(UploadSession.id)
    ).first()
    return moved is not None
