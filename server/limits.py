"""Request-body caps per route, enforced while the body is read; no NUL in a path or query.

A pure ASGI middleware wraps ``receive`` and counts bytes: the moment a body crosses its
route's cap, the read raises :class:`BodyTooLarge` (413 ``too_large``, ``Connection: close``),
so at most the cap plus one received chunk is ever held, whatever the body's declared length.
The caps: ``OSTRACA_MAX_ENVELOPE_BYTES`` for a manifest envelope, none for an upload chunk
(the upload protocol bounds it by the session's declared size), :data:`CARD_BYTES` (or more)
for a dataset card (its README may hold 65,536 code points, SPEC 3.7), and
``OSTRACA_MAX_STATEMENT_BYTES`` for everything else (logins, registrations, requests, grants,
denials, revocations, rotations, deprecations, namespaces).
"""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import problem_response
from .settings import Settings

_MANIFEST = re.compile(r"^/v1/datasets/[^/]+/[^/]+/versions/?$")
_UPLOAD_CHUNK = re.compile(r"^/v1/uploads/[^/]+/?$")
_CARD = re.compile(r"^/v1/datasets/[^/]+/[^/]+/card/?$")
CARD_BYTES = 1024 * 1024
"""A card envelope's cap: room for the longest README and description in any UTF-8."""


_NUL = problem_response(
    status=422,
    code="malformed",
    title="Malformed input",
    detail="the path or query contains a NUL character",
)


class BodyTooLarge(HTTPException):
    """Raised from ``receive``; an :class:`HTTPException` so FastAPI's body parser re-raises it
    as is (it turns any other exception into a 400)."""

    def __init__(self, cap: int) -> None:
        super().__init__(
            status_code=413,
            detail=f"the request body is over this route's limit of {cap} bytes",
            headers={"Connection": "close"},
        )


def body_cap(settings: Settings, method: str, path: str) -> int | None:
    """The most body bytes ``method path`` may send; ``None``: not capped here."""
    if method == "PATCH" and _UPLOAD_CHUNK.match(path):
        return None
    if method == "POST" and _MANIFEST.match(path):
        return settings.max_envelope_bytes
    if method == "POST" and _CARD.match(path):
        return max(settings.max_statement_bytes, CARD_BYTES)
    return settings.max_statement_bytes


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
            await _NUL(scope, receive, send)
            return
        cap = body_cap(self.settings, scope["method"], scope["path"])
        if cap is None:
            await self.app(scope, receive, send)
            return
        limit = cap
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, capped_receive, send)
