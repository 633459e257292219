"""Principals and their keys: which keys sign for a principal now, which it rotated away from,
its sessions (login nonces, bearer tokens). Functions take the session explicitly."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, cast

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ostraca.protocol_spec.envelope import Envelope
from ostraca.protocol_spec.errors import NotFoundError, UntrustedKeyError
from ostraca.protocol_spec.keys import VerifyKey
from ostraca.protocol_spec.models import PublicKey
from ostraca.protocol_spec.wire import KeyOut, PrincipalOut

from .db import AuthToken, LoginNonce, Principal, PrincipalKey
from .repo import ts


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


def all_keys(session: Session, principal_id: int) -> list[PrincipalKey]:
    """Every key the principal ever had: active, rotated and revoked."""
    return list(
        session.scalars(select(PrincipalKey).where(PrincipalKey.principal_id == principal_id))
    )


def successor_of(session: Session, keyid: str) -> str | None:
    """The key that ``keyid`` was rotated to, if any."""
    return session.scalars(select(PrincipalKey.keyid).where(PrincipalKey.replaces == keyid)).first()


def add_nonce(
    session: Session, *, nonce: str, keyid: str, now: datetime, expires: datetime
) -> None:
    """Store a login challenge, forgetting the expired ones."""
    session.execute(delete(LoginNonce).where(LoginNonce.expires <= now))
    session.add(LoginNonce(nonce=nonce, keyid=keyid, expires=expires))


def consume_nonce(session: Session, *, nonce: str, keyid: str, now: datetime) -> bool:
    """Use a login challenge up: ``True`` for the one caller that deletes its unexpired row (a
    replay finds nothing)."""
    used = session.execute(
        delete(LoginNonce)
        .where(LoginNonce.nonce == nonce, LoginNonce.keyid == keyid, LoginNonce.expires > now)
        .returning(LoginNonce.nonce)
    ).first()
    return used is not None


def add_token(
    session: Session, *, token_sha256: str, key: PrincipalKey, now: datetime, expires: datetime
) -> None:
    """Store a new bearer token (its hash) for ``key``, forgetting the expired ones."""
    session.add(
        AuthToken(
            token_sha256=token_sha256,
            principal_id=key.principal_id,
            keyid=key.keyid,
            created=now,
            expires=expires,
            revoked=None,
        )
    )
    session.execute(delete(AuthToken).where(AuthToken.expires <= now))


def end_token(session: Session, token_sha256: str, now: datetime) -> None:
    """Revoke one bearer token (logout)."""
    session.execute(
        update(AuthToken).where(AuthToken.token_sha256 == token_sha256).values(revoked=now)
    )
