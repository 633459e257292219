"""The resumable part of a publish: the staging directory of one set of inputs.

``$OSTRACA_HOME/staging/<ns>/<name>/<fingerprint>/`` is keyed by the input files (path, size,
mtime) and the encoding options (:func:`fingerprint_of`). Its :class:`Plan` records the shards
:func:`encode` wrote, their digests and the signed manifest, so an interrupted publish re-run
with the same inputs neither re-encodes nor re-uploads; :class:`UploadSessions` remembers the
registry's open upload sessions, so a cut-off upload continues from the registry's offset.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.progress import Progress

from ostraca.protocol_spec import MalformedError
from ostraca.protocol_spec.crypto import ShardCipher

from .files import atomic_write
from .ingest import Input, batch_bytes, conform, wrap_arrow_errors
from .shards import Compression, ShardFile, ShardWriter

__all__ = ["PLAN_VERSION", "Plan", "UploadSessions", "encode", "fingerprint_of", "open_plan"]

PLAN_VERSION = 1


@dataclass
class Plan:
    directory: Path
    fingerprint: str
    schema_b64: str = ""
    columns: list[dict[str, str]] = field(default_factory=list)
    shards: list[ShardFile] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    published: dict[str, Any] | None = None
    escrow: dict[str, Any] | None = None
    """The publisher's escrow key grant (ENCRYPTION.md 4.5) of the data keys the staged shards
    are sealed under; ``None``: plaintext shards."""
    ephemeral: bool = False
    """In-memory inputs: the directory is used once and removed afterwards."""

    @property
    def path(self) -> Path:
        return self.directory / "plan.json"

    @property
    def encoded(self) -> bool:
        return bool(self.shards) and all(
            f.path.is_file()
            and f.path.stat().st_size == f.bytes
            and f.chunk_list_path.is_file()
            and f.chunk_list_path.stat().st_size == f.chunk_list_bytes
            for s in self.shards
            for f in s.files()
        )

    def save(self) -> None:
        obj = {
            "plan_version": PLAN_VERSION,
            "fingerprint": self.fingerprint,
            "schema_b64": self.schema_b64,
            "columns": self.columns,
            "shards": [s.to_json() for s in self.shards],
            "manifest": self.manifest,
            "published": self.published,
            "escrow": self.escrow,
        }
        _atomic_write_json(self.path, obj)

    def mark_published(self, *, version: int, digest: str) -> None:
        """Record that the registry has the version; the staged shard files are then removed."""
        self.published = {"version": version, "digest": digest}
        self.save()
        for f in (f for s in self.shards for f in s.files()):
            f.path.unlink(missing_ok=True)
            f.chunk_list_path.unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: Path, fingerprint: str) -> Plan:
        plan = cls(directory=directory, fingerprint=fingerprint)
        try:
            obj = json.loads(plan.path.read_text())
            if obj.get("plan_version") != PLAN_VERSION or obj.get("fingerprint") != fingerprint:
                return plan
            plan.schema_b64 = str(obj["schema_b64"])
            plan.columns = list(obj["columns"])
            plan.shards = [ShardFile.from_json(directory, s) for s in obj["shards"]]
            plan.manifest = obj.get("manifest")
            plan.published = obj.get("published")
            plan.escrow = obj.get("escrow")
        except (OSError, ValueError, KeyError, TypeError):
            return cls(directory=directory, fingerprint=fingerprint)
        return plan


class UploadSessions:
    """Open upload sessions of a dataset's staging area, by blob digest (survives crashes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = json.loads(path.read_text())
            self.sessions: dict[str, str] = {str(k): str(v) for k, v in dict(data).items()}
        except (OSError, ValueError, TypeError):
            self.sessions = {}

    def get(self, digest: str) -> str | None:
        return self.sessions.get(digest)

    def set(self, digest: str, upload_id: str | None) -> None:
        if upload_id is None:
            self.sessions.pop(digest, None)
        else:
            self.sessions[digest] = upload_id
        _atomic_write_json(self.path, self.sessions)


def _atomic_write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def encode(
    inputs: list[Input],
    schema: pa.Schema,
    plan: Plan,
    *,
    shard_bytes: int,
    chunk_bytes: int,
    compression: Compression,
    progress: Progress,
    groups: dict[str, list[str]] | None = None,
    seal: Callable[[int, str], ShardCipher] | None = None,
) -> None:
    """Encode the inputs into the plan's shards (sealed by ``seal(shard, group)`` if given)."""
    for old in plan.directory.glob("shard-*"):
        old.unlink()
    writer = ShardWriter(
        plan.directory,
        schema,
        shard_bytes=shard_bytes,
        chunk_bytes=chunk_bytes,
        compression=compression,
        groups=groups,
        seal=seal,
    )
    task = progress.add_task("encoding (bytes read)", total=None)
    try:
        for inp in inputs:
            for batch in wrap_arrow_errors(inp.label, inp.batches()):
                writer.write(conform(batch, schema, inp.label))
                progress.advance(task, batch_bytes(batch))
        shards = writer.close()
    except BaseException:
        writer.abort()
        raise
    if not shards:
        raise MalformedError("nothing to publish: the inputs hold no rows")
    plan.shards = shards
    plan.schema_b64 = base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")
    plan.columns = [{"name": f.name, "type": str(f.type)} for f in schema]
    plan.manifest = None
    plan.published = None
    plan.escrow = None
    plan.save()


def fingerprint_of(inputs: list[Input], options: dict[str, Any]) -> str | None:
    if any(i.fingerprint is None for i in inputs):
        return None
    obj = {"inputs": [i.fingerprint for i in inputs], "options": options}
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def open_plan(area: Path, inputs: list[Input], options: dict[str, Any]) -> Plan:
    """The plan in ``area`` (a dataset's staging folder) for these inputs and options; a fresh,
    ephemeral one for in-memory inputs, which cannot be recognised across runs."""
    fingerprint = fingerprint_of(inputs, options)
    if fingerprint is None:
        return Plan(directory=area / f"mem-{uuid.uuid4().hex}", fingerprint="", ephemeral=True)
    return Plan.load(area / fingerprint[:24], fingerprint)
