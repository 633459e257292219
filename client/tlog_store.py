"""What the client keeps about each registry's transparency log, and what it requires of it
(protocol_spec/LOG.md section 11, R5): :class:`CheckpointStore` holds a :class:`StoredLog` per
registry (``$OSTRACA_HOME/logs/<hash of its URL>.json``, mode 0600), :class:`LogPolicy` the
maximum age and the witnesses required (``$OSTRACA_HOME/log.json``). Used by ``tlog.py``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from ostraca.protocol_spec import MalformedError
from ostraca.protocol_spec.checkpoint import DEFAULT_MAX_AGE
from ostraca.protocol_spec.note import COSIGNATURE_V1, NoteVerifier

from .files import atomic_write

__all__ = ["CheckpointStore", "LogPolicy", "StoredLog", "log_vkey_of"]


def log_vkey_of(text: str) -> NoteVerifier:
    """A log's or witness's vkey, which must be a timestamped ``cosignature/v1`` key."""
    verifier = NoteVerifier.from_vkey(text.strip())
    if verifier.sig_type != COSIGNATURE_V1:
        raise MalformedError(f"key {verifier} is not a cosignature/v1 key")
    return verifier


@dataclass(frozen=True, slots=True)
class LogPolicy:
    """What the client requires of a checkpoint: its maximum age, and ``quorum`` of the known
    ``witnesses`` (vkeys) having cosigned it."""

    max_age: timedelta = DEFAULT_MAX_AGE
    witnesses: tuple[NoteVerifier, ...] = ()
    quorum: int = 0

    @classmethod
    def load(cls, home: Path) -> LogPolicy:
        """``home/log.json`` (``{"max_age_hours": 24, "witnesses": [vkey, ...], "quorum": k}``)
        or the defaults when there is none."""
        path = home / "log.json"
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_bytes())
            hours = float(raw.get("max_age_hours", DEFAULT_MAX_AGE.total_seconds() / 3600))
            witnesses = tuple(log_vkey_of(v) for v in raw.get("witnesses", []))
            quorum = int(raw.get("quorum", 0))
        except (ValueError, TypeError, AttributeError) as exc:
            raise MalformedError(f"{path}: not a valid log policy: {exc}") from exc
        return cls(max_age=timedelta(hours=hours), witnesses=witnesses, quorum=quorum)


@dataclass(frozen=True, slots=True)
class StoredLog:
    """What the client keeps per registry: the pinned log key, the last accepted checkpoint,
    and for each grant it relies on, the tree size up to which it has read every entry after
    the grant's and found no revocation (so the next check reads only the new entries)."""

    log: NoteVerifier
    note: bytes
    scanned: dict[str, int]


class CheckpointStore:
    """The :class:`StoredLog` of one registry (``home/logs/<hash of its URL>.json``, 0600)."""

    def __init__(self, home: Path, registry: str) -> None:
        name = hashlib.sha256(registry.encode()).hexdigest()[:24]
        self.path = home / "logs" / f"{name}.json"
        self.registry = registry

    def load(self) -> StoredLog | None:
        if not self.path.exists():
            return None
        try:
            raw = json.loads(self.path.read_bytes())
            scanned = {str(k): int(v) for k, v in raw["scanned"].items()}
            note = base64.b64decode(raw["checkpoint"], validate=True)
            return StoredLog(log=log_vkey_of(raw["vkey"]), note=note, scanned=scanned)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise MalformedError(f"{self.path}: damaged checkpoint store: {exc}") from exc

    def save(self, stored: StoredLog) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "registry": self.registry,
            "vkey": stored.log.to_vkey(),
            "checkpoint": base64.b64encode(stored.note).decode("ascii"),
            "scanned": stored.scanned,
        }
        # A temporary file of its own per writer: DataLoader workers opening one dataset at
        # once save the same checkpoint side by side.
        atomic_write(self.path, json.dumps(body).encode(), mode=0o600)
