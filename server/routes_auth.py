"""Identity without passwords: register a key with proof of possession, log in by signing a
single-use challenge, receive a short-lived bearer token (stored hashed); rotate a key with a
KeyRotation signed by the old and the new key.

Rotation rules (HTTP_API.md, "Key rotation"):

- The old key must be the principal's active key; the new key must not be registered to anyone.
- Afterwards the old key is ``rotated``: still listed (with its status) so that the versions,
  grants and revocations it signed before keep verifying, but it signs nothing new (publishing,
  granting, revoking, requesting with it is refused) and cannot log in.
- Every bearer token of the principal is revoked: whoever held the old key (possibly a thief)
  loses the sessions it opened; the owner logs in again with the new key.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import datetime, timedelta

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from ostraca.protocol_spec.auth import login_message, registration_message
from ostraca.protocol_spec.envelope import Envelope
from ostraca.protocol_spec.errors import (
    AuthenticationError,
    ConflictError,
    MalformedError,
    NotFoundError,
    SignatureError,
    UntrustedKeyError,
)
from ostraca.protocol_spec.keys import VerifyKey
from ostraca.protocol_spec.models import KeyRotation
from ostraca.protocol_spec.rotation import walk_rotations
from ostraca.protocol_spec.verify import Verified, verify_key_rotation
from ostraca.protocol_spec.wire import (
    ChallengeIn,
    ChallengeOut,
    PrincipalOut,
    RegisterIn,
    RotationList,
    RotationOut,
    TokenIn,
    TokenOut,
)

from .audit import audit
from .db import Principal, PrincipalKey
from .deps import (
    ContextDep,
    EnvelopeBody,
    JsonBody,
    PrincipalDep,
    ReadSessionDep,
    SessionDep,
    token_sha256,
)
from .principals import (
    add_nonce,
    add_token,
    all_keys,
    consume_nonce,
    end_token,
    get_principal,
    principal_by_key,
    principal_out,
    retire_key,
    revoke_tokens,
    rotated_key_error,
    successor_of,
)
from .repo import (
    claimed_statement,
    envelope_json,
    published_datasets,
    store_or_conflict,
    ts,
)

router = APIRouter(prefix="/v1", tags=["identity"])


def _signature(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError("signature is not base64") from exc


@router.post("/principals", status_code=201, dependencies=[JsonBody])
def register(body: RegisterIn, session: SessionDep, ctx: ContextDep) -> PrincipalOut:
    key = body.public_key.to_verify_key()
    message = registration_message(
        public_key=body.public_key.public,
        name=body.name,
        kind=body.kind,
        affiliation=body.affiliation,
    )
    key.verify(_signature(body.signature), message)
    now = ctx.clock()
    principal = Principal(
        keyid=key.keyid,
        name=body.name,
        kind=body.kind,
        affiliation=body.affiliation,
        created=now,
    )
    with store_or_conflict(session, f"key {key.keyid} is already registered"):
        session.add(principal)
        session.flush()
        session.add(
            PrincipalKey(
                keyid=key.keyid,
                principal_id=principal.id,
                public=key.b64,
                created=now,
                revoked=None,
            )
        )
    out = principal_out(session, principal)
    session.commit()
    return out


@router.get("/principals/{keyid}")
def get_principal_by_key(keyid: str, session: ReadSessionDep) -> PrincipalOut:
    principal = principal_by_key(session, keyid)
    if principal is None:
        raise NotFoundError(f"no principal with key {keyid[:64]}")
    return principal_out(session, principal)


@router.post("/auth/challenge", dependencies=[JsonBody])
def challenge(body: ChallengeIn, session: SessionDep, ctx: ContextDep) -> ChallengeOut:
    now = ctx.clock()
    # Unknown keys get a nonce too (no oracle for registered keys).
    nonce = secrets.token_hex(32)
    expires = now + timedelta(seconds=ctx.settings.nonce_ttl_seconds)
    add_nonce(session, nonce=nonce, keyid=body.keyid, now=now, expires=expires)
    session.commit()
    return ChallengeOut(nonce=nonce, expires=expires)


@router.post("/auth/token", dependencies=[JsonBody])
def token(body: TokenIn, session: SessionDep, ctx: ContextDep) -> TokenOut:
    now = ctx.clock()
    # Single use: whoever deletes the nonce row owns it; a replay finds nothing.
    used = consume_nonce(session, nonce=body.nonce, keyid=body.keyid, now=now)
    session.commit()
    if not used:
        raise AuthenticationError(
            "unknown, expired or already used login nonce", hint="request a new challenge"
        )
    key_row = session.get(PrincipalKey, body.keyid)
    if key_row is None or key_row.revoked is not None:
        raise AuthenticationError(f"key {body.keyid} is not registered", hint="ostraca register")
    if key_row.rotated is not None:
        refused = rotated_key_error(key_row, successor_of(session, key_row.keyid))
        raise AuthenticationError(
            f"{refused.message}; log in with the key it was rotated to", hint=refused.hint
        )
    try:
        VerifyKey.from_b64(key_row.public).verify(
            _signature(body.signature), login_message(body.nonce)
        )
    except SignatureError as exc:
        raise AuthenticationError("the challenge signature does not verify") from exc
    raw = secrets.token_urlsafe(32)
    expires = now + timedelta(seconds=ctx.settings.token_ttl_seconds)
    add_token(session, token_sha256=token_sha256(raw), key=key_row, now=now, expires=expires)
    principal = get_principal(session, key_row.principal_id)
    out = TokenOut(token=raw, expires=expires, principal=principal_out(session, principal))
    session.commit()
    return out


@router.delete("/auth/token", status_code=204, response_class=Response)
def logout(caller: PrincipalDep, session: SessionDep, ctx: ContextDep) -> Response:
    end_token(session, caller.token_sha256, ctx.clock())
    session.commit()
    return Response(status_code=204)


@router.get("/whoami")
def whoami(caller: PrincipalDep, session: ReadSessionDep) -> PrincipalOut:
    return principal_out(session, get_principal(session, caller.principal_id))


# --- key rotation ------------------------------------------------------------------------------

_ROTATION_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
        "description": "The DSSE envelope of a KeyRotation signed by the old and the new key.",
    }
}


def _rotation_out(principal: Principal, row: PrincipalKey, rot: KeyRotation) -> RotationOut:
    """A stored rotation: the row of the key it introduced, and its (verified) statement."""
    assert row.rotation is not None
    assert row.rotation_id is not None
    return RotationOut(
        rotation_id=row.rotation_id,
        principal=principal.keyid,
        old_key=rot.old_key,
        new_key=rot.new_key,
        reason=rot.reason,
        created=ts(rot.created),
        rotated_at=ts(row.created),
        envelope=envelope_json(row.rotation),
    )


def _find_principal(session: Session, keyid: str) -> Principal:
    principal = principal_by_key(session, keyid)
    if principal is None:
        raise NotFoundError(f"no principal with key {keyid[:64]}")
    return principal


def _key_to_rotate(session: Session, principal: Principal, claimed: KeyRotation) -> PrincipalKey:
    """The key the rotation claims to hand over: it must be this principal's active key."""
    old = session.get(PrincipalKey, claimed.old_key)
    if old is None or old.principal_id != principal.id or old.revoked is not None:
        raise UntrustedKeyError(
            f"the rotation hands over key {claimed.old_key[:16]}…, which is not a key of "
            f"principal {principal.keyid[:16]}…"
        )
    if old.rotated is not None:
        successor = successor_of(session, old.keyid)
        raise ConflictError(
            f"key {old.keyid[:16]}… was already rotated"
            + ("" if successor is None else f" to {successor[:16]}…")
            + f" at {old.rotated:%Y-%m-%dT%H:%M:%SZ}",
            hint="rotate from the active key (GET /v1/principals/{keyid}/rotations)",
        )
    return old


def _audit_rotation(
    session: Session, principal: Principal, verified: Verified[KeyRotation], now: datetime
) -> None:
    """In the principal's audit trail, and in that of every dataset it publishes: their
    readers' trust in the publisher key changes here."""
    rot = verified.statement
    detail = f"key rotation {verified.digest}: {rot.old_key} -> {rot.new_key.keyid}"
    if rot.reason:
        detail += f"; reason: {rot.reason}"
    for name in [None, *published_datasets(session, principal.id)]:
        audit(
            session,
            now=now,
            action="rotate_key",
            principal=rot.old_key,
            dataset=name,
            detail=detail,
        )


@router.post("/principals/{keyid}/rotations", status_code=201, openapi_extra=_ROTATION_BODY)
def rotate_key(keyid: str, body: EnvelopeBody, session: SessionDep, ctx: ContextDep) -> RotationOut:
    """Hand the principal's authority from its active key to a new one (SPEC.md 5.5).

    No bearer token: the two signatures are the authority, as for registration."""
    principal = _find_principal(session, keyid)
    # The payload names the old key; it must be this principal's active key. Nothing of the
    # claim is trusted before verify_key_rotation below checks it (K1–K7).
    envelope, claimed = claimed_statement(body, KeyRotation)
    old = _key_to_rotate(session, principal, claimed)
    now = ctx.clock()
    # K1–K7: signed by the old key and by the new one, not from the future.
    verified = verify_key_rotation(envelope, old_key=VerifyKey.from_b64(old.public), now=now)
    new = verified.statement.new_key
    if session.get(PrincipalKey, new.keyid) is not None:
        raise ConflictError(f"key {new.keyid} is already registered", hint="rotate to a fresh key")
    # The old key stops being active exactly once: of two concurrent rotations one wins here,
    # the other finds nothing to update (or loses on the unique ``replaces``).
    if not retire_key(session, old.keyid, now):
        session.rollback()
        raise ConflictError(f"key {old.keyid[:16]}… was rotated concurrently")
    row = PrincipalKey(
        keyid=new.keyid,
        principal_id=principal.id,
        public=new.public,
        created=now,
        revoked=None,
        rotated=None,
        replaces=old.keyid,
        rotation_id=verified.digest,
        rotation=body,
    )
    with store_or_conflict(session, f"key {new.keyid} is already registered"):
        session.add(row)
    # Sessions opened with the old key (by its owner or by whoever stole it) end now.
    revoke_tokens(session, principal.id, now)
    _audit_rotation(session, principal, verified, now)
    out = _rotation_out(principal, row, verified.statement)
    session.commit()
    return out


@router.get("/principals/{keyid}/rotations")
def list_rotations(keyid: str, session: ReadSessionDep, ctx: ContextDep) -> RotationList:
    """The principal's chain of KeyRotation envelopes, oldest first (public: clients that pinned
    an older key follow it, verifying each link with the key before)."""
    principal = _find_principal(session, keyid)
    rows = all_keys(session, principal.id)
    registered = next(k for k in rows if k.keyid == principal.keyid)
    by_rotation = {k.rotation_id: k for k in rows if k.rotation is not None}
    # The same walk a client does from the key it pinned (SPEC.md 5.5).
    walk = walk_rotations(
        {registered.keyid: VerifyKey.from_b64(registered.public)},
        [Envelope.from_json(k.rotation) for k in by_rotation.values() if k.rotation is not None],
        now=ctx.clock(),
    )
    items = [
        _rotation_out(principal, by_rotation[link.digest], link.statement) for link in walk.links
    ]
    (active_key,) = walk.active
    return RotationList(principal=principal.keyid, active_key=active_key, items=items)
