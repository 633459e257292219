"""Namespaces, datasets, publishing versions, manifests, and the publisher's audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from ostraca.protocol_spec.chunks import chunk_list_bytes
from ostraca.protocol_spec.envelope import Envelope
from ostraca.protocol_spec.errors import (
    ConflictError,
    MalformedError,
    NotFoundError,
    VerificationError,
)
from ostraca.protocol_spec.models import DatasetManifest
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

from .audit import audit
from .cards import current_version
from .db import Dataset, Namespace, Principal
from .deps import (
    ContextDep,
    EnvelopeBody,
    InstitutionDep,
    JsonBody,
    PrincipalDep,
    ReadSessionDep,
    SessionDep,
)
from .parsing import ascii_uint
from .principals import (
    key_outs,
    signing_keys,
)
from .repo import (
    ManifestBlobs,
    audit_events,
    dataset_name,
    find_dataset,
    get_dataset,
    get_namespace,
    latest_head,
    manifest_envelope,
    namespace_blob_sizes,
    owned_namespace,
    require_owner,
    search_datasets,
    store_or_conflict,
    store_version,
    ts,
    versions_of,
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
    with store_or_conflict(session, f"namespace {body.name!r} is taken"):
        session.add(Namespace(name=body.name, owner_id=caller.principal_id, created=ctx.clock()))
    session.commit()
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
    rows, total = search_datasets(session, search, limit=limit, offset=offset)
    return DatasetList(items=[_summary(ds) for ds in rows], total=total)


@router.get("/datasets/{ns}/{name}")
def dataset_detail(ns: str, name: str, session: ReadSessionDep) -> DatasetDetail:
    ds = get_dataset(session, dataset_name(ns, name))
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
            for v in versions_of(session, ds)
        ],
    )


def _manifest_blobs(session: Session, namespace: Namespace, m: DatasetManifest) -> ManifestBlobs:
    """Every shard and chunk-list blob the manifest names, each uploaded into the namespace with
    the stated size. A blob other namespaces hold is unknown here: its digest is public, its
    bytes are not (the publisher must send them into its own namespace)."""
    wanted: ManifestBlobs = {}
    for shard in m.shards:
        for blob in shard.blobs():  # one per column group (SPEC 2.6)
            wanted[blob.sha256] = ("shard", blob.bytes, blob.group)
            chunks = chunk_list_bytes(blob.bytes, m.chunk_bytes)
            wanted.setdefault(blob.chunks, ("chunks", chunks, blob.group))
    present = namespace_blob_sizes(session, namespace.id, list(wanted))
    for digest, (kind, size, _) in wanted.items():
        if digest not in present:
            raise BlobUnknownError(
                f"{kind} blob sha256:{digest} was not uploaded into namespace {namespace.name}",
                hint="upload it into this namespace first",
            )
        if present[digest] != size:
            raise BlobSizeError(
                f"{kind} blob sha256:{digest} has {present[digest]} bytes, the manifest "
                f"implies {size}"
            )
    return wanted


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
    namespace = owned_namespace(session, caller, ns)
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
    blobs = _manifest_blobs(session, namespace, m)
    # Visible in one transaction; a concurrent publisher of the same version loses on the
    # unique constraints (dataset name; dataset and version).
    with store_or_conflict(session, f"{full} version {m.version} was published concurrently"):
        store_version(
            session,
            namespace=namespace,
            dataset=ds,
            verified=verified,
            envelope=body,
            blobs=blobs,
            now=now,
        )
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
    return PublishOut(dataset=full, version=m.version, digest=verified.digest)


@router.get(
    "/datasets/{ns}/{name}/versions/{version}/manifest",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "Manifest envelope"}},
)
def manifest(ns: str, name: str, version: str, session: ReadSessionDep) -> Response:
    ds = get_dataset(session, dataset_name(ns, name))
    if version == "latest":  # the newest version not deprecated
        number = current_version(session, ds)
    elif (parsed := ascii_uint(version, max_digits=15)) is not None:
        number = parsed
    else:
        raise MalformedError("version must be a positive integer or 'latest'")
    envelope = manifest_envelope(session, ds, number)
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
            for e in audit_events(session, ds.name, after=after, limit=limit)
        ]
    )
