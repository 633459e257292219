"""The bearer token of one identity at one registry: this session's copy, and the one cached in
``$OSTRACA_HOME/token.json`` (mode 0600) for the next process, used until shortly before it
expires."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from ostraca.protocol_spec.wire import TokenOut

from .files import atomic_write

__all__ = ["TOKEN_MARGIN", "TokenCache"]

TOKEN_MARGIN = timedelta(seconds=60)
"""A cached token this close to its expiry is treated as expired."""


class TokenCache:
    """Tokens for ``registry``, cached in ``path``; a cached token of another key is ignored."""

    def __init__(self, path: Path, *, registry: str) -> None:
        self.path = path
        self.registry = registry
        self.current: TokenOut | None = None

    def valid(self, keyid: str) -> TokenOut | None:
        """This session's token, or the cached one, unless it (nearly) expired."""
        if self.current is None:
            self.current = self.cached(keyid)
        if self.current is not None and self.current.expires - TOKEN_MARGIN > datetime.now(UTC):
            return self.current
        return None

    def cached(self, keyid: str) -> TokenOut | None:
        """The token on disk, if it is for this registry and ``keyid``."""
        try:
            data = json.loads(self.path.read_text())
            if data.get("registry") != self.registry or data.get("keyid") != keyid:
                return None
            return TokenOut.model_validate(data["token"])
        except (OSError, ValueError, KeyError, TypeError, ValidationError):
            return None

    def store(self, token: TokenOut, keyid: str) -> None:
        self.current = token
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"registry": self.registry, "keyid": keyid, "token": token.model_dump(mode="json")}
        atomic_write(self.path, json.dumps(record).encode(), mode=0o600)

    def forget(self) -> None:
        self.current = None
        self.path.unlink(missing_ok=True)
