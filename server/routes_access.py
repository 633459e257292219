"""Access requests, grants, denials and revocations. Every statement is verified before it is
stored, stored byte for byte, and every decision lands in the audit log."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy import Select, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ostraca.protocol_spec.canonical import parse_canonical
from ostraca.protocol_spec.envelope import Envelope
from ostraca.protocol_spec.errors import (
    AccessDeniedError,
    ConflictError,
    NotFoundError,
    UntrustedKeyError,
    VerificationError,
)
from ostraca.protocol_spec.models import AccessGrant, DatasetManifest, Revocation
from ostraca.protocol_spec.verify import open_grant, verify_request, verify_revocation
from ostraca.protocol_spec.wire import (
    DenyIn,
    GrantItem,
    GrantList,
    RequestItem,
    RequestList,
    RevocationOut,
)

from .audit import audit
from .db import AccessRequestRow, Dataset, GrantRow, Namespace, RevocationRow, Version
from .deps import Caller, ContextDep, EnvelopeBody, JsonBody, PrincipalDep, SessionDep
from .repo import (
    claimed_statement,
    envelope_json,
    get_dataset,
    get_principal,
    owner_of,
    principal_by_key,
    principal_out,
    require_owner,
    signing_keys,
)

router = APIRouter(prefix="/v1", tags=["access"])

_ENVELOPE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
        "description": "A DSSE envelope (JSON object) of the signed statement.",
    }
}


def _latest_manifest(session: Session, ds: Dataset) -> DatasetManifest:
    stored = session.scalars(
        select(Version.envelope).where(
            Version.dataset_id == ds.id, Version.version == ds.latest_version
        )
    ).one()
    return DatasetManifest.from_json_obj(parse_canonical(Envelope.from_json(stored).payload))


def _request_item(session: Session, row: AccessRequestRow) -> RequestItem:
    ds = session.get(Dataset, row.dataset_id)
    assert ds is not None
    return RequestItem(
        request_id=row.request_id,
        dataset=ds.name,
        requester=principal_out(session, get_principal(session, row.requester_id)),
        purpose=row.purpose,
        status=row.status,  # type: ignore[arg-type]  # checked by a table constraint
        created=row.created,
        decided=row.decided,
        reason=row.reason,
        grant_id=row.grant_id,
        envelope=envelope_json(row.envelope),
    )


def _grant_item(session: Session, row: GrantRow) -> GrantItem:
    ds = session.get(Dataset, row.dataset_id)
    assert ds is not None
    revocation = session.get(RevocationRow, row.grant_id)
    return GrantItem(
        grant_id=row.grant_id,
        dataset=ds.name,
        publisher=row.publisher,
        grantee=row.grantee,
        request=row.request_id,
        min_version=row.min_version,
        max_version=row.max_version,
        columns=row.columns,
        not_before=row.not_before,
        expires=row.expires,
        created=row.created,
        revoked=revocation is not None,
        revocation=None if revocation is None else envelope_json(revocation.envelope),
        envelope=envelope_json(row.envelope),
    )


# --- requests ---------------------------------------------------------------------------------


@router.post("/requests", status_code=201, openapi_extra=_ENVELOPE_BODY)
def create_request(
    caller: PrincipalDep, body: EnvelopeBody, session: SessionDep, ctx: ContextDep
) -> RequestItem:
    envelope = Envelope.from_json(body)
    now = ctx.clock()
    key = signing_keys(session, caller.principal_id, envelope).get(caller.keyid)
    if key is None:
        raise UntrustedKeyError("the key you logged in with has been revoked or rotated")
    # Q1–Q6: signed by the caller's key, a valid request, not from the future.
    verified = verify_request(envelope, requester_key=key, now=now)
    ds = get_dataset(session, verified.statement.dataset)
    # Q7: it accepts the dataset's current terms, exactly.
    verified = verify_request(
        envelope, requester_key=key, now=now, manifest=_latest_manifest(session, ds)
    )
    row = AccessRequestRow(
        request_id=verified.digest,
        dataset_id=ds.id,
        requester_id=caller.principal_id,
        purpose=verified.statement.purpose,
        status="pending",
        created=now,
        decided=None,
        reason=None,
        grant_id=None,
        envelope=body,
    )
    session.add(row)
    audit(
        session,
        now=now,
        action="request",
        principal=caller.keyid,
        dataset=ds.name,
        detail=f"request {verified.digest}",
    )
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(f"request {verified.digest} was already submitted") from exc
    item = _request_item(session, row)
    session.commit()
    return item


def _visible_requests(caller: Caller) -> Select[AccessRequestRow]:
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


@router.get("/requests")
def list_requests(
    caller: PrincipalDep,
    session: SessionDep,
    dataset: Annotated[str | None, Query(max_length=160)] = None,
    status: Literal["pending", "granted", "denied"] | None = None,
) -> RequestList:
    query = _visible_requests(caller)
    if dataset is not None:
        query = query.where(Dataset.name == dataset)
    if status is not None:
        query = query.where(AccessRequestRow.status == status)
    rows = session.scalars(query.order_by(AccessRequestRow.created, AccessRequestRow.request_id))
    return RequestList(items=[_request_item(session, r) for r in rows])


def _find_request(session: Session, caller: Caller, request_id: str) -> AccessRequestRow:
    row = session.scalars(
        _visible_requests(caller).where(AccessRequestRow.request_id == request_id)
    ).first()
    if row is None:
        raise NotFoundError(f"no request {request_id[:64]} of yours or for your datasets")
    return row


@router.get("/requests/{request_id}")
def get_request(request_id: str, caller: PrincipalDep, session: SessionDep) -> RequestItem:
    return _request_item(session, _find_request(session, caller, request_id))


@router.post("/requests/{request_id}/deny", dependencies=[JsonBody])
def deny_request(
    request_id: str, body: DenyIn, caller: PrincipalDep, session: SessionDep, ctx: ContextDep
) -> RequestItem:
    row = _find_request(session, caller, request_id)
    ds = session.get(Dataset, row.dataset_id)
    assert ds is not None
    require_owner(session, caller, ds)
    now = ctx.clock()
    changed = session.execute(
        update(AccessRequestRow)
        .where(AccessRequestRow.request_id == request_id, AccessRequestRow.status == "pending")
        .values(status="denied", decided=now, reason=body.reason)
        .returning(AccessRequestRow.request_id)
    ).first()
    if changed is None:
        session.rollback()
        raise ConflictError(f"request {request_id} was already decided")
    audit(
        session,
        now=now,
        action="deny",
        principal=caller.keyid,
        dataset=ds.name,
        detail=f"request {request_id}: {body.reason}",
    )
    session.commit()
    session.refresh(row)
    return _request_item(session, row)


# --- grants -----------------------------------------------------------------------------------


@router.post("/grants", status_code=201, openapi_extra=_ENVELOPE_BODY)
def create_grant(
    caller: PrincipalDep, body: EnvelopeBody, session: SessionDep, ctx: ContextDep
) -> GrantItem:
    # The payload names the dataset, whose owner's keys are the trusted ones.
    envelope, claimed = claimed_statement(body, AccessGrant)
    ds = get_dataset(session, claimed.dataset)
    require_owner(session, caller, ds)
    # G1–G5: signed by an active key of the namespace owner (a rotated key grants nothing new),
    # naming its signer. G8–G12 are checked when the grant is used (access.py).
    verified = open_grant(
        envelope, publisher_keys=signing_keys(session, owner_of(session, ds), envelope)
    )
    g, grant_id, signer = verified.statement, verified.digest, verified.signer
    grantee = principal_by_key(session, g.grantee)
    if grantee is None:
        raise VerificationError(f"grantee key {g.grantee} is not registered on this registry")
    now = ctx.clock()
    if g.request is not None:
        req = session.get(AccessRequestRow, g.request)
        if req is None or req.dataset_id != ds.id or req.requester_id != grantee.id:
            raise VerificationError(
                f"grant answers request {g.request}, which is not a request for {ds.name} "
                "by the grantee"
            )
        decided = session.execute(
            update(AccessRequestRow)
            .where(AccessRequestRow.request_id == g.request, AccessRequestRow.status == "pending")
            .values(status="granted", decided=now, grant_id=grant_id)
            .returning(AccessRequestRow.request_id)
        ).first()
        if decided is None:
            session.rollback()
            raise ConflictError(f"request {g.request} was already decided")
    row = GrantRow(
        grant_id=grant_id,
        dataset_id=ds.id,
        publisher=signer.keyid,
        publisher_id=caller.principal_id,
        grantee=g.grantee,
        grantee_id=grantee.id,
        request_id=g.request,
        min_version=g.min_version,
        max_version=g.max_version,
        columns=None if g.columns is None else list(g.columns),
        not_before=g.not_before,
        expires=g.expires,
        created=g.created,
        envelope=body,
    )
    session.add(row)
    audit(
        session,
        now=now,
        action="grant",
        principal=caller.keyid,
        dataset=ds.name,
        grant_id=grant_id,
        detail=f"to {g.grantee}, versions {g.min_version}..{g.max_version or ''}, "
        f"{g.not_before:%Y-%m-%dT%H:%M:%SZ} to {g.expires:%Y-%m-%dT%H:%M:%SZ}",
    )
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(f"grant {grant_id} is already stored") from exc
    item = _grant_item(session, row)
    session.commit()
    return item


def _visible_grants(caller: Caller) -> Select[GrantRow]:
    return select(GrantRow).where(
        or_(
            GrantRow.publisher_id == caller.principal_id, GrantRow.grantee_id == caller.principal_id
        )
    )


@router.get("/grants")
def list_grants(
    caller: PrincipalDep,
    session: SessionDep,
    dataset: Annotated[str | None, Query(max_length=160)] = None,
) -> GrantList:
    query = _visible_grants(caller)
    if dataset is not None:
        query = query.join(Dataset, Dataset.id == GrantRow.dataset_id).where(
            Dataset.name == dataset
        )
    rows = session.scalars(query.order_by(GrantRow.created, GrantRow.grant_id))
    return GrantList(items=[_grant_item(session, r) for r in rows])


@router.get("/grants/{grant_id}")
def get_grant(grant_id: str, caller: PrincipalDep, session: SessionDep) -> GrantItem:
    row = session.scalars(_visible_grants(caller).where(GrantRow.grant_id == grant_id)).first()
    if row is None:
        raise NotFoundError(f"no grant {grant_id[:64]} issued by you or to you")
    return _grant_item(session, row)


# --- revocations ------------------------------------------------------------------------------


@router.post("/revocations", status_code=201, openapi_extra=_ENVELOPE_BODY)
def revoke(
    caller: PrincipalDep, body: EnvelopeBody, session: SessionDep, ctx: ContextDep
) -> RevocationOut:
    envelope, claimed = claimed_statement(body, Revocation)
    grant = session.get(GrantRow, claimed.grant)
    if grant is None:
        raise NotFoundError(f"no grant {claimed.grant}")
    ds = session.get(Dataset, grant.dataset_id)
    assert ds is not None
    if grant.publisher_id != caller.principal_id:
        raise AccessDeniedError("only the publisher who issued a grant may revoke it")
    key = signing_keys(session, caller.principal_id, envelope).get(claimed.publisher)
    if key is None:
        raise UntrustedKeyError("the revocation names a key that is not the publisher's")
    now = ctx.clock()
    verified = verify_revocation(envelope, publisher_key=key, now=now)  # R1–R6
    if verified.statement.dataset != ds.name:
        raise VerificationError(
            f"the revocation names {verified.statement.dataset}, the grant is for {ds.name}"
        )
    session.add(
        RevocationRow(
            grant_id=grant.grant_id, revocation_id=verified.digest, revoked_at=now, envelope=body
        )
    )
    audit(
        session,
        now=now,
        action="revoke",
        principal=caller.keyid,
        dataset=ds.name,
        grant_id=grant.grant_id,
        detail=verified.statement.reason,
    )
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(f"grant {grant.grant_id} is already revoked") from exc
    return RevocationOut(grant_id=grant.grant_id, revoked_at=now, envelope=envelope_json(body))
