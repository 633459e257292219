"""Encryption keys and key grants (ENCRYPTION.md 4.4). Each statement is verified against the
keys of the principal it names before it is stored byte for byte; the registry never opens one."""

from __future__ import annotations

from fastapi import APIRouter

from ostraca.protocol_spec.enckeys import (
    EncryptionKey,
    KeyGrant,
    verify_encryption_key,
    verify_key_grant,
)
from ostraca.protocol_spec.errors import NotFoundError, VerificationError
from ostraca.protocol_spec.wire import (
    EncryptionKeyItem,
    EncryptionKeyList,
    KeyGrantItem,
    KeyGrantList,
)

from .audit import audit
from .deps import ContextDep, EnvelopeBody, PrincipalDep, ReadSessionDep, SessionDep
from .keygrants import (
    check_key_grant,
    encryption_key_item,
    encryption_key_row,
    encryption_keys,
    key_grant_item,
    key_grant_row,
    visible_key_grants,
)
from .principals import principal_by_key, signing_keys
from .repo import claimed_statement, get_dataset, owner_of, require_owner, store_or_conflict
from .routes_access import _ENVELOPE_BODY

router = APIRouter(prefix="/v1", tags=["encryption"])


@router.post("/encryption-keys", status_code=201, openapi_extra=_ENVELOPE_BODY)
def register_encryption_key(
    caller: PrincipalDep, body: EnvelopeBody, session: SessionDep, ctx: ContextDep
) -> EncryptionKeyItem:
    envelope, _ = claimed_statement(body, EncryptionKey)
    now = ctx.clock()
    # E1–E6: signed by an active key of the caller, naming it as the owner.
    verified = verify_encryption_key(
        envelope, owner_keys=signing_keys(session, caller.principal_id, envelope), now=now
    )
    row = encryption_key_row(verified.statement, principal_id=caller.principal_id, envelope=body)
    with store_or_conflict(session, f"encryption key {row.keyid} is already registered"):
        session.add(row)
    item = encryption_key_item(row)
    session.commit()
    return item


@router.get("/principals/{keyid}/encryption-keys")
def list_encryption_keys(keyid: str, session: ReadSessionDep) -> EncryptionKeyList:
    principal = principal_by_key(session, keyid)
    if principal is None:
        raise NotFoundError(f"no principal with key {keyid[:64]}")
    return EncryptionKeyList(
        items=[encryption_key_item(r) for r in encryption_keys(session, principal.id)]
    )


@router.post("/key-grants", status_code=201, openapi_extra=_ENVELOPE_BODY)
def create_key_grant(
    caller: PrincipalDep, body: EnvelopeBody, session: SessionDep, ctx: ContextDep
) -> KeyGrantItem:
    envelope, claimed = claimed_statement(body, KeyGrant)
    ds = get_dataset(session, claimed.dataset)
    require_owner(session, caller, ds)
    now = ctx.clock()
    # W1–W6: signed by an active key of the namespace owner, naming its signer.
    verified = verify_key_grant(
        envelope, publisher_keys=signing_keys(session, owner_of(session, ds), envelope), now=now
    )
    grantee = principal_by_key(session, verified.statement.grantee)
    if grantee is None:
        raise VerificationError(f"grantee key {claimed.grantee} is not registered here")
    check_key_grant(
        session,
        verified.statement,
        dataset=ds,
        grantee_id=grantee.id,
        publisher_id=caller.principal_id,
    )
    row = key_grant_row(
        verified.statement,
        key_grant_id=verified.digest,
        dataset=ds,
        grantee_id=grantee.id,
        envelope=body,
    )
    with store_or_conflict(session, f"key grant {verified.digest} is already stored"):
        session.add(row)
        audit(
            session,
            now=now,
            action="key_grant",
            principal=caller.keyid,
            dataset=ds.name,
            grant_id=verified.statement.grant,
            detail=f"key grant {verified.digest}: {len(verified.statement.keys)} wrapped data "
            f"keys to {verified.statement.grantee}",
        )
    item = key_grant_item(session, row)
    session.commit()
    return item


@router.get("/datasets/{ns}/{name}/key-grants")
def list_key_grants(
    ns: str, name: str, caller: PrincipalDep, session: ReadSessionDep
) -> KeyGrantList:
    ds = get_dataset(session, f"{ns}/{name}")
    rows = visible_key_grants(session, caller, dataset=ds)
    return KeyGrantList(items=[key_grant_item(session, r) for r in rows])
