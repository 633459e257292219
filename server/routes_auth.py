"""Identity without passwords: register a key with proof of possession, log in by signing a
single-use challenge, receive a short-lived bearer token (stored hashed)."""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import timedelta

from fastapi import APIRouter, Response
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from ostraca.protocol_spec.auth import login_message, registration_message
from ostraca.protocol_spec.errors import (
    AuthenticationError,
    ConflictError,
    MalformedError,
    NotFoundError,
    SignatureError,
)
from ostraca.protocol_spec.keys import VerifyKey

from .db import AuthToken, LoginNonce, Principal, PrincipalKey
from .deps import ContextDep, JsonBody, PrincipalDep, ReadSessionDep, SessionDep, token_sha256
from .repo import get_principal, principal_by_key, principal_out
from .schemas import (
    ChallengeIn,
    ChallengeOut,
    PrincipalOut,
    RegisterIn,
    TokenIn,
    TokenOut,
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
    session.add(principal)
    try:
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
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(f"key {key.keyid} is already registered") from exc
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
    # Forget expired nonces; unknown keys get a nonce too (no oracle for registered keys).
    session.execute(delete(LoginNonce).where(LoginNonce.expires <= now))
    nonce = secrets.token_hex(32)
    expires = now + timedelta(seconds=ctx.settings.nonce_ttl_seconds)
    session.add(LoginNonce(nonce=nonce, keyid=body.keyid, expires=expires))
    session.commit()
    return ChallengeOut(nonce=nonce, expires=expires)


@router.post("/auth/token", dependencies=[JsonBody])
def token(body: TokenIn, session: SessionDep, ctx: ContextDep) -> TokenOut:
    now = ctx.clock()
    # Single use: whoever deletes the nonce row owns it; a replay finds nothing.
    used = session.execute(
        delete(LoginNonce)
        .where(
            LoginNonce.nonce == body.nonce,
            LoginNonce.keyid == body.keyid,
            LoginNonce.expires > now,
        )
        .returning(LoginNonce.nonce)
    ).first()
    session.commit()
    if used is None:
        raise AuthenticationError(
            "unknown, expired or already used login nonce", hint="request a new challenge"
        )
    key_row = session.get(PrincipalKey, body.keyid)
    if key_row is None or key_row.revoked is not None:
        raise AuthenticationError(f"key {body.keyid} is not registered", hint="ostraca register")
    try:
        VerifyKey.from_b64(key_row.public).verify(
            _signature(body.signature), login_message(body.nonce)
        )
    except SignatureError as exc:
        raise AuthenticationError("the challenge signature does not verify") from exc
    raw = secrets.token_urlsafe(32)
    expires = now + timedelta(seconds=ctx.settings.token_ttl_seconds)
    session.add(
        AuthToken(
            token_sha256=token_sha256(raw),
            principal_id=key_row.principal_id,
            keyid=key_row.keyid,
            created=now,
            expires=expires,
            revoked=None,
        )
    )
    session.execute(delete(AuthToken).where(AuthToken.expires <= now))
    principal = get_principal(session, key_row.principal_id)
    out = TokenOut(token=raw, expires=expires, principal=principal_out(session, principal))
    session.commit()
    return out


@router.delete("/auth/token", status_code=204, response_class=Response)
def logout(caller: PrincipalDep, session: SessionDep, ctx: ContextDep) -> Response:
    session.execute(
        update(AuthToken)
        .where(AuthToken.token_sha256 == caller.token_sha256)
        .values(revoked=ctx.clock())
    )
    session.commit()
    return Response(status_code=204)


@router.get("/whoami")
def whoami(caller: PrincipalDep, session: ReadSessionDep) -> PrincipalOut:
    principal = session.scalars(select(Principal).where(Principal.id == caller.principal_id)).one()
    return principal_out(session, principal)
