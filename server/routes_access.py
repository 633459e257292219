"""Access requests, grants, denials and revocations. Every statement is verified before it is
stored, stored byte for byte, and every decision lands in the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Unpack

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from ostraca.protocol_spec.envelope import Envelope
from ostraca.protocol_spec.errors import (
    AccessDeniedError,
    MalformedError,
    NotFoundError,
    UntrustedKeyError,
    VerificationError,
)
from ostraca.protocol_spec.models import AccessGrant, Revocation
from ostraca.protocol_spec.verify import open_grant, verify_request, verify_revocation
from ostraca.protocol_spec.wire import (
    DenyIn,
    GrantItem,
    GrantList,
    RequestItem,
    RequestList,
    RevocationOut,
)

from .audit import AuditEntry, audit
from .db import AccessRequestRow, Base, Dataset, GrantRow, Principal, RevocationRow
from .deps import ContextDep, EnvelopeBody, JsonBody, PrincipalDep, SessionDep
from .grants import (
    RequestStatus,
    check_grant_groups,
    decide_request,
    find_grant,
    find_request,
    latest_manifest,
    visible_grants,
    visible_requests,
)
from .keygrants import key_grant_item, visible_key_grants
from .principals import (
    get_principal,
    principal_by_key,
    principal_out,
    signing_keys,
)
from .repo import (
    claimed_statement,
    dataset_by_id,
    envelope_json,
    find_dataset,
    get_dataset,
    owner_of,
    require_owner,
    store_or_conflict,
)

router = APIRouter(prefix="/v1", tags=["access"])

_ENVELOPE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
        "description": "A DSSE envelope (JSON object) of the signed statement.",
    }
}


def _request_item(session: Session, row: AccessRequestRow) -> RequestItem:
    ds = dataset_by_id(session, row.dataset_id)
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
    ds = dataset_by_id(session, row.dataset_id)
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
        groups=row.groups,
        not_before=row.not_before,
        expires=row.expires,
        created=row.created,
        revoked=revocation is not None,
        revocation=None if revocation is None else envelope_json(revocation.envelope),
        envelope=envelope_json(row.envelope),
    )


def _store(session: Session, row: Base, *, conflict: str, **entry: Unpack[AuditEntry]) -> None:
    """Add the row of a verified statement and its audit event (not committed yet); a
    statement stored already is a :class:`ConflictError` with message ``conflict``."""
    with store_or_conflict(session, conflict):
        session.add(row)
        audit(session, **entry)


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
        envelope, requester_key=key, now=now, manifest=latest_manifest(session, ds)
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
    _store(
        session,
        row,
        conflict=f"request {verified.digest} was already submitted",
        now=now,
        action="request",
        principal=caller.keyid,
        dataset=ds.name,
        detail=f"request {verified.digest}",
    )
    item = _request_item(session, row)
    session.commit()
    return item


@router.get("/requests")
def list_requests(
    caller: PrincipalDep,
    session: SessionDep,
    dataset: Annotated[str | None, Query(max_length=160)] = None,
    status: RequestStatus | None = None,
) -> RequestList:
    rows = visible_requests(session, caller, dataset=dataset, status=status)
    return RequestList(items=[_request_item(session, r) for r in rows])


@router.get("/requests/{request_id}")
def get_request(request_id: str, caller: PrincipalDep, session: SessionDep) -> RequestItem:
    return _request_item(session, find_request(session, caller, request_id))


@router.post("/requests/{request_id}/deny", dependencies=[JsonBody])
def deny_request(
    request_id: str, body: DenyIn, caller: PrincipalDep, session: SessionDep, ctx: ContextDep
) -> RequestItem:
    row = find_request(session, caller, request_id)
    ds = dataset_by_id(session, row.dataset_id)
    require_owner(session, caller, ds)
    now = ctx.clock()
    decide_request(session, request_id, status="denied", now=now, reason=body.reason)
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


def _answer_request(
    session: Session,
    grant: AccessGrant,
    *,
    dataset: Dataset,
    grantee: Principal,
    grant_id: str,
    now: datetime,
) -> None:
    """The grant answers a pending request for this dataset by the grantee: it is granted."""
    assert grant.request is not None
    req = session.get(AccessRequestRow, grant.request)
    if req is None or req.dataset_id != dataset.id or req.requester_id != grantee.id:
        raise VerificationError(
            f"grant answers request {grant.request}, which is not a request for {dataset.name} "
            "by the grantee"
        )
    decide_request(session, grant.request, status="granted", now=now, grant_id=grant_id)


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
    check_grant_groups(g, latest_manifest(session, ds))
    now = ctx.clock()
    if g.request is not None:
        _answer_request(session, g, dataset=ds, grantee=grantee, grant_id=grant_id, now=now)
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
        groups=None if g.groups is None else list(g.groups),
        not_before=g.not_before,
        expires=g.expires,
        created=g.created,
        envelope=body,
    )
    _store(
        session,
        row,
        conflict=f"grant {grant_id} is already stored",
        now=now,
        action="grant",
        principal=caller.keyid,
        dataset=ds.name,
        grant_id=grant_id,
        detail=f"to {g.grantee}, versions {g.min_version}..{g.max_version or ''}, "
        f"{g.not_before:%Y-%m-%dT%H:%M:%SZ} to {g.expires:%Y-%m-%dT%H:%M:%SZ}",
    )
    item = _grant_item(session, row)
    session.commit()
    return item


@router.get("/grants")
def list_grants(
    caller: PrincipalDep,
    session: SessionDep,
    dataset: Annotated[str | None, Query(max_length=160)] = None,
    key_grants: bool = False,
) -> GrantList:
    """With ``key_grants`` (and ``dataset``), the caller's key grants of the dataset too, as
    ``GET /v1/datasets/{ns}/{name}/key-grants`` would list them: one round trip for a reader
    of an encrypted version instead of two."""
    if key_grants and not dataset:
        raise MalformedError("key_grants=true needs dataset=")
    rows = visible_grants(session, caller, dataset=dataset)
    items = [_grant_item(session, r) for r in rows]
    if not key_grants or not dataset:
        return GrantList(items=items)
    ds = find_dataset(session, dataset)
    keyed = [] if ds is None else visible_key_grants(session, caller, dataset=ds)
    return GrantList(items=items, key_grants=[key_grant_item(session, r) for r in keyed])


@router.get("/grants/{grant_id}")
def get_grant(grant_id: str, caller: PrincipalDep, session: SessionDep) -> GrantItem:
    return _grant_item(session, find_grant(session, caller, grant_id))


# --- revocations ------------------------------------------------------------------------------


@router.post("/revocations", status_code=201, openapi_extra=_ENVELOPE_BODY)
def revoke(
    caller: PrincipalDep, body: EnvelopeBody, session: SessionDep, ctx: ContextDep
) -> RevocationOut:
    envelope, claimed = claimed_statement(body, Revocation)
    grant = session.get(GrantRow, claimed.grant)
    if grant is None:
        raise NotFoundError(f"no grant {claimed.grant}")
    ds = dataset_by_id(session, grant.dataset_id)
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
    revocation = RevocationRow(
        grant_id=grant.grant_id, revocation_id=verified.digest, revoked_at=now, envelope=body
    )
    _store(
        session,
        revocation,
        conflict=f"grant {grant.grant_id} is already revoked",
        now=now,
        action="revoke",
        principal=caller.keyid,
        dataset=ds.name,
        grant_id=grant.grant_id,
        detail=verified.statement.reason,
    )
    session.commit()
    return RevocationOut(grant_id=grant.grant_id, revoked_at=now, envelope=envelope_json(body))
