"""What routes depend on: the app context, database sessions, the caller, the request body.

Short typed aliases (``SessionDep``, ``PrincipalDep``, ...) keep route signatures readable.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from ostraca.protocol_spec.errors import (
    AccessDeniedError,
    AuthenticationError,
    TooLargeError,
    UnsupportedMediaTypeError,
)
from ostraca.protocol_spec.models import DatasetManifest

from .db import AuthToken, Database, Principal
from .metrics import Metrics
from .settings import Settings
from .storage import BlobStorage

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class AppContext:
    """Everything a request needs, built once by ``create_app``."""

    settings: Settings
    db: Database
    storage: BlobStorage
    clock: Clock
    metrics: Metrics


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated principal and the key it logged in with."""

    principal_id: int
    principal_keyid: str
    keyid: str
    kind: str
    token_sha256: str

    @property
    def is_institution(self) -> bool:
        return self.kind == "institution"


def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]


def get_session(ctx: ContextDep) -> Iterator[Session]:
    with ctx.db.session() as session:
        yield session


def get_read_session(ctx: ContextDep) -> Iterator[Session]:
    with ctx.db.read_session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
"""A read-write session; routes commit explicitly."""
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
"""A session for routes that only read."""


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "the Authorization header must be 'Bearer <token>'", hint="ostraca login"
        )
    return token.strip()


BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A token from POST /v1/auth/token (ostraca login)",
)
"""Declares the bearer scheme in the OpenAPI document (Swagger's Authorize button); the
header itself is parsed by :func:`_bearer`, which refuses a malformed one."""


def get_optional_caller(
    request: Request,
    ctx: ContextDep,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> Caller | None:
    token = _bearer(request)
    if token is None:
        return None
    digest = token_sha256(token)
    with ctx.db.read_session() as session:
        row = session.execute(
            select(AuthToken, Principal)
            .join(Principal, Principal.id == AuthToken.principal_id)
            .where(AuthToken.token_sha256 == digest)
        ).first()
    if row is None:
        raise AuthenticationError("unknown bearer token", hint="ostraca login")
    tok, principal = row
    if tok.revoked is not None:
        raise AuthenticationError("this bearer token was revoked", hint="ostraca login")
    if ctx.clock() >= tok.expires:
        raise AuthenticationError("this bearer token has expired", hint="ostraca login")
    return Caller(
        principal_id=principal.id,
        principal_keyid=principal.keyid,
        keyid=tok.keyid,
        kind=principal.kind,
        token_sha256=digest,
    )


OptionalCallerDep = Annotated[Caller | None, Depends(get_optional_caller)]


def get_caller(caller: OptionalCallerDep) -> Caller:
    if caller is None:
        raise AuthenticationError("this endpoint needs a bearer token", hint="ostraca login")
    return caller


PrincipalDep = Annotated[Caller, Depends(get_caller)]


def get_institution(caller: PrincipalDep) -> Caller:
    if not caller.is_institution:
        raise AccessDeniedError("only an institution may do this")
    return caller


InstitutionDep = Annotated[Caller, Depends(get_institution)]


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def require_json(request: Request) -> None:
    """415 unless the body is declared JSON."""
    media = _media_type(request)
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"expected Content-Type application/json, got {media or '(none)'!r}"
        )


JsonBody = Depends(require_json)


MIN_SHARD_ENVELOPE_BYTES = 64
"""No shard entry takes fewer bytes in a manifest envelope: its SHA-256 hex digest alone is 64
characters (before base64 makes them more)."""


def manifest_shard_count(body: bytes) -> int | None:
    """How many shards the manifest in envelope ``body`` lists; ``None`` if ``body`` is not a
    readable manifest envelope (verification then says precisely what is wrong)."""
    try:
        envelope = json.loads(body)
        if envelope.get("payloadType") != DatasetManifest.PAYLOAD_TYPE:
            return None
        shards = json.loads(base64.b64decode(envelope["payload"], validate=True)).get("shards")
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    return len(shards) if isinstance(shards, list) else None


async def read_envelope_body(request: Request, ctx: ContextDep) -> bytes:
    """The raw request body of a signed envelope, declared JSON. Its size is capped while it
    is read (``limits.BodyLimitMiddleware``); a manifest's shard count is capped here, before
    any signature or blob is checked."""
    require_json(request)
    body = await request.body()
    cap = ctx.settings.max_manifest_shards
    if len(body) <= cap * MIN_SHARD_ENVELOPE_BYTES:
        return body  # too short to list more than ``cap`` shards: no second parse
    shards = manifest_shard_count(body)
    if shards is not None and shards > cap:
        raise TooLargeError(
            f"the manifest lists {shards} shards, over this registry's limit of {cap}",
            hint="publish with larger shards (OSTRACA_MAX_MANIFEST_SHARDS on the registry)",
        )
    return body


EnvelopeBody = Annotated[bytes, Depends(read_envelope_body)]
