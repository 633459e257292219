"""Namespaces, datasets, publishing versions, manifests, and the publisher's audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from ostraca.protocol_spec.chunks import chunk_list_bytes
from ostraca.protocol_spec.envelope import Envelope
from ostraca.protocol_spec.errors import (
    AccessDeniedError,
    ConflictError,
    MalformedError,
    NotFoundError,
    VerificationError,
)
from ostraca.protocol_spec.verify import ChainHead, verify_link, verify_manifest
from ostraca.protocol_spec.wire import (
    AuditEventOut,
    AuditList,
    ColumnOut,
    DatasetDetail,
    DatasetList,
    DatasetSummary,
    NamespaceDetail,
    NamespaceIn,
    NamespaceOut,
    PublishOut,
    VersionOut,
)

from .db import AuditEvent, Blob, Dataset, Namespace, Principal, Version, VersionBlob
from .deps import (
    ContextDep,
    EnvelopeBody,
    InstitutionDep,
    JsonBody,
    PrincipalDep,
    ReadSessionDep,
    SessionDep,
)
from .repo import (
    audit,
    dataset_name,
    find_dataset,
    get_dataset,
    get_namespace,
    key_outs,
    latest_head,
    require_owner,
    signing_keys,
    ts,
)

router = APIRouter(prefix="/v1", tags=["datasets"])


class BlobUnknownError(VerificationError):
    """A manifest names a blob the registry does not hold."""

    code = "blob_unknown"
    title = "Manifest names a blob that was not uploaded"


class BlobSizeError(VerificationError):
    """A manifest names a blob whose stored size differs from the size it states."""

    code = "blob_size_mismatch"
    title = "Blob size differs from the manifest"


# --- namespaces -------------------------------------------------------------------------------


@router.post("/namespaces", status_code=201, dependencies=[JsonBody])
def create_namespace(
    body: NamespaceIn, caller: InstitutionDep, session: SessionDep, ctx: ContextDep
) -> NamespaceOut:
    session.add(Namespace(name=body.name, owner_id=caller.principal_id, created=ctx.clock()))
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(f"namespace {body.name!r} is taken") from exc
    return NamespaceOut(name=body.name, owner=caller.principal_keyid)


@router.get("/namespaces/{ns}")
def namespace_detail(ns: str, session: ReadSessionDep) -> NamespaceDetail:
    namespace = get_namespace(session, ns)
    owner = session.get(Principal, namespace.owner_id)
    assert owner is not None
    return NamespaceDetail(name=namespace.name, owner=owner.keyid, keys=key_outs(session, owner.id))


# --- datasets ---------------------------------------------------------------------------------


def _summary(ds: Dataset) -> DatasetSummary:
    return DatasetSummary(
        dataset=ds.name,
        namespace=ds.name.partition("/")[0],
        description=ds.description,
        license=ds.license,
        latest_version=ds.latest_version,
        total_rows=ds.total_rows,
        total_bytes=ds.total_bytes,
        publisher=ds.publisher,
        updated=ts(ds.updated),
    )


@router.get("/datasets")
def list_datasets(
    session: ReadSessionDep,
    search: Annotated[str, Query(max_length=256)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> DatasetList:
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
    return DatasetList(items=[_summary(ds) for ds in rows], total=total)


@router.get("/datasets/{ns}/{name}")
def dataset_detail(ns: str, name: str, session: ReadSessionDep) -> DatasetDetail:
    ds = get_dataset(session, dataset_name(ns, name))
    versions = session.scalars(
        select(Version).where(Version.dataset_id == ds.id).order_by(Version.version)
    )
    return DatasetDetail(
        **_summary(ds).model_dump(),
        terms=ds.terms,
        terms_sha256=ds.terms_sha256,
        columns=[ColumnOut(name=c["name"], type=c["type"]) for c in ds.columns],
        versions=[
            VersionOut(
                version=v.version,
                digest=v.digest,
                created=ts(v.created),
                total_rows=v.total_rows,
                total_bytes=v.total_bytes,
                shards=v.shards,
            )
            for v in versions
        ],
    )


@router.post(
    "/datasets/{ns}/{name}/versions",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
            "description": "The DSSE envelope of the signed DatasetManifest.",
        }
    },
)
def publish(
    ns: str,
    name: str,
    caller: InstitutionDep,
    body: EnvelopeBody,
    session: SessionDep,
    ctx: ContextDep,
) -> PublishOut:
    full = dataset_name(ns, name)
    namespace = get_namespace(session, ns)
    if namespace.owner_id != caller.principal_id:
        raise AccessDeniedError(f"namespace {ns!r} belongs to another institution")
    envelope = Envelope.from_json(body)
    now = ctx.clock()
    # Signature by an active key of the namespace owner (a rotated key signs nothing new),
    # payload valid, for this dataset (M1–M7).
    verified = verify_manifest(
        envelope,
        publisher_keys=signing_keys(session, namespace.owner_id, envelope),
        now=now,
        dataset=full,
    )
    m = verified.statement
    # The version must be new here; then the hash chain against the latest one (M8).
    ds = find_dataset(session, full)
    head = ChainHead.empty(full) if ds is None else latest_head(session, ds)
    if m.version <= head.version:
        raise ConflictError(f"{full} version {m.version} is already published")
    verify_link(m, verified.digest, previous=head)
    # Every shard and chunk-list blob present, with the stated size.
    wanted: dict[str, tuple[str, int]] = {}
    for shard in m.shards:
        wanted[shard.sha256] = ("shard", shard.bytes)
        wanted.setdefault(shard.chunks, ("chunks", chunk_list_bytes(shard.bytes, m.chunk_bytes)))
    present: dict[str, int] = {}
    digests = list(wanted)
    for i in range(0, len(digests), 500):
        batch = digests[i : i + 500]
        present.update(
            (d, n)
            for d, n in session.execute(
                select(Blob.digest, Blob.size).where(Blob.digest.in_(batch))
            )
        )
    for digest, (kind, size) in wanted.items():
        if digest not in present:
            raise BlobUnknownError(
                f"{kind} blob sha256:{digest} is not on the registry", hint="upload it first"
            )
        if present[digest] != size:
            raise BlobSizeError(
                f"{kind} blob sha256:{digest} has {present[digest]} bytes, the manifest "
                f"implies {size}"
            )
    # Visible in one transaction; a concurrent publisher of the same version loses on the
    # unique constraints (dataset name; dataset and version).
    columns = [{"name": c.name, "type": c.type} for c in m.columns]
    if ds is None:
        ds = Dataset(
            name=full,
            namespace_id=namespace.id,
            latest_version=0,
            description=m.description,
            license=m.license,
            terms=m.terms,
            terms_sha256=m.terms_sha256,
            columns=columns,
            total_rows=m.total_rows,
            total_bytes=m.total_bytes,
            publisher=m.publisher,
            created=now,
            updated=now,
        )
        session.add(ds)
    try:
        session.flush()
        version = Version(
            dataset_id=ds.id,
            version=m.version,
            digest=verified.digest,
            envelope=body,
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
            for d, (kind, size) in wanted.items()
        )
        ds.latest_version = m.version
        ds.description = m.description
        ds.license = m.license
        ds.terms = m.terms
        ds.terms_sha256 = m.terms_sha256
        ds.columns = columns
        ds.total_rows = m.total_rows
        ds.total_bytes = m.total_bytes
        ds.publisher = m.publisher
        ds.updated = now
        audit(
            session,
            now=now,
            action="publish",
            principal=caller.keyid,
            dataset=full,
            version=m.version,
            detail=f"manifest {verified.digest}",
        )
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(f"{full} version {m.version} was published concurrently") from exc
    return PublishOut(dataset=full, version=m.version, digest=verified.digest)


@router.get(
    "/datasets/{ns}/{name}/versions/{version}/manifest",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "Manifest envelope"}},
)
def manifest(ns: str, name: str, version: str, session: ReadSessionDep) -> Response:
    ds = get_dataset(session, dataset_name(ns, name))
    if version == "latest":
        number = ds.latest_version
    elif version.isdigit() and len(version) < 16:
        number = int(version)
    else:
        raise MalformedError("version must be a positive integer or 'latest'")
    envelope = session.scalars(
        select(Version.envelope).where(Version.dataset_id == ds.id, Version.version == number)
    ).first()
    if envelope is None:
        raise NotFoundError(f"{ds.name} has no version {version}")
    return Response(content=envelope, media_type="application/json")


@router.get("/datasets/{ns}/{name}/audit")
def audit_log(
    ns: str,
    name: str,
    caller: PrincipalDep,
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[int, Query(ge=0)] = 0,
) -> AuditList:
    ds = get_dataset(session, dataset_name(ns, name))
    require_owner(session, caller, ds)
    rows = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.dataset == ds.name, AuditEvent.id > after)
        .order_by(AuditEvent.id)
        .limit(limit)
    )
    return AuditList(
        items=[
            AuditEventOut(
                id=e.id,
                time=ts(e.time),
                action=e.action,
                principal=e.principal,
                dataset=e.dataset,
                version=e.version,
                grant_id=e.grant_id,
                detail=e.detail,
            )
            for e in rows
        ]
    )
