"""Publishing a dataset version: inputs → Arrow IPC shards → signed manifest → registry.

:func:`publish` reads the inputs (:mod:`.ingest`: files, directories, tables, batch iterators,
one unified schema), writes shards of about ``shard_bytes`` (see :mod:`.shards` for the format)
into a staging directory (:mod:`.staging`: the resumable plan), hashing while writing; signs the
manifest locally; uploads into the dataset's namespace only the blobs it lacks, in resumable
chunks; and publishes the version (which the registry makes visible atomically).

Resuming: re-running an interrupted publish with the same inputs neither re-encodes nor
re-uploads: blobs already in the namespace are skipped (``HEAD``), and an upload session that was
cut off continues from the registry's offset. In-memory inputs (tables, batch iterators) are
re-encoded — deterministically, so the digests are the same and the same skipping applies.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from ostraca.protocol_spec import (
    Column,
    ConflictError,
    DatasetManifest,
    Envelope,
    MalformedError,
    ShardEntry,
    SigningKey,
    sign_statement,
    split_dataset,
    utc_now,
)
from ostraca.protocol_spec.chunks import (
    DEFAULT_CHUNK_DIGEST,
    PUBLISH_CHUNK_DIGEST,
    ChunkDigest,
    chunk_hasher,
)
from ostraca.protocol_spec.crypto import DataKey, GroupContext, ShardCipher
from ostraca.protocol_spec.enckeys import KeyGrant, open_key_grant
from ostraca.protocol_spec.models import DEFAULT_GROUP, SPDX_PATTERN, ColumnGroup, GroupEncryption

from .api import RegistryClient
from .encryption import by_version, identity_encryption_key, key_grant_envelope
from .ingest import Input, Source, open_inputs, unify_schemas
from .keyflow import publish_keys
from .shards import (
    COMPRESSIONS,
    DEFAULT_CHUNK_BYTES,
    DEFAULT_SHARD_BYTES,
    Compression,
    ShardFile,
)
from .staging import Plan, Uploader, UploadSessions, encode, open_plan

__all__ = ["UPLOAD_PIECE_BYTES", "PublishResult", "publish"]

UPLOAD_PIECE_BYTES = 8 * 1024 * 1024
"""Bytes per ``PATCH`` of a resumable upload."""


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What a publish did. ``blobs_uploaded``/``bytes_uploaded`` count this run only."""

    dataset: str
    version: int
    digest: str
    shards: tuple[ShardEntry, ...]
    total_rows: int
    total_bytes: int
    blobs_uploaded: int
    bytes_uploaded: int
    blobs_skipped: int
    encoded: bool
    """Whether this run encoded the shards (``False``: reused a staged encoding)."""
    already_published: bool
    """The same inputs were already published as this version: nothing was done."""
    staging_dir: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "version": self.version,
            "digest": self.digest,
            "shards": len(self.shards),
            "total_rows": self.total_rows,
            "total_bytes": self.total_bytes,
            "blobs_uploaded": self.blobs_uploaded,
            "bytes_uploaded": self.bytes_uploaded,
            "blobs_skipped": self.blobs_skipped,
            "encoded": self.encoded,
            "already_published": self.already_published,
        }


# ── publish ──────────────────────────────────────────────────────────────────────────────────


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        disable=not (enabled and sys.stderr.isatty()),
        transient=False,
    )


@dataclass(frozen=True, slots=True)
class _Options:
    dataset: str
    license: str
    terms: str
    description: str
    shard_bytes: int
    compression: Compression
    chunk_bytes: int
    upload_piece_bytes: int
    column_groups: dict[str, list[str]]
    """Column groups other than ``default`` (SPEC 2.6): group name → its columns."""
    encrypt: bool
    chunk_digest: ChunkDigest

    def check(self) -> None:
        split_dataset(self.dataset)
        chunk_hasher(self.chunk_digest)  # a known algorithm, or MalformedError naming it
        if self.compression not in COMPRESSIONS:
            raise MalformedError(f"compression must be one of {', '.join(COMPRESSIONS)}")
        chunk = self.chunk_bytes
        if chunk < 65536 or chunk & (chunk - 1):
            raise MalformedError("chunk_bytes must be a power of two of at least 64 KiB")
        if self.shard_bytes < chunk:
            raise MalformedError(f"shard_bytes must be at least chunk_bytes ({chunk})")
        if not self.terms.strip():
            raise MalformedError("terms must not be empty: say what users may do with the data")
        if self.upload_piece_bytes < 1:
            raise MalformedError("upload_piece_bytes must be positive")
        _check_license(self.license)

    def keyed(self, schema: pa.Schema) -> dict[str, Any]:
        """The options a staged encoding depends on (part of the staging key)."""
        return {
            "dataset": self.dataset,
            "shard_bytes": self.shard_bytes,
            "chunk_bytes": self.chunk_bytes,
            "chunk_digest": self.chunk_digest,
            "compression": self.compression,
            "schema": base64.b64encode(schema.serialize().to_pybytes()).decode("ascii"),
            "column_groups": self.column_groups,
            "encrypt": self.encrypt,
        }

    def check_groups(self, schema: pa.Schema) -> None:
        """The groups name columns of ``schema``, none twice, and leave ``default`` one."""
        named = [c for cols in self.column_groups.values() for c in cols]
        unknown = sorted(set(named) - set(schema.names))
        if unknown:
            raise MalformedError(f"column groups name unknown column(s): {', '.join(unknown)}")
        if len(set(named)) != len(named):
            raise MalformedError("a column is in two column groups")
        if named and set(named) >= set(schema.names):
            raise MalformedError(
                f"the column groups take every column: leave at least one for {DEFAULT_GROUP!r}"
            )


def _build_manifest(
    plan: Plan, opts: _Options, *, key: SigningKey, latest: tuple[int, str | None]
) -> Envelope:
    """The plan's signed manifest if it still fits (chain position, texts), else a new one."""
    latest_version, latest_digest = latest
    license, terms, description = opts.license, opts.terms, opts.description
    if plan.manifest is not None:
        env = Envelope.from_dict(plan.manifest)
        old = DatasetManifest.from_json_obj(json.loads(env.payload))
        if (
            old.version == latest_version + 1
            and old.previous == latest_digest
            and (old.license, old.terms, old.description) == (license, terms, description)
            and old.publisher == key.keyid
        ):
            return env
    manifest = DatasetManifest(
        dataset=opts.dataset,
        version=latest_version + 1,
        previous=latest_digest,
        created=utc_now(),
        publisher=key.keyid,
        license=license,
        terms=terms,
        description=description,
        arrow_schema=plan.schema_b64,
        columns=[Column(name=c["name"], type=c["type"]) for c in plan.columns],
        chunk_bytes=opts.chunk_bytes,
        chunk_digest=None if opts.chunk_digest == DEFAULT_CHUNK_DIGEST else opts.chunk_digest,
        shards=[s.entry() for s in plan.shards],
        total_rows=sum(s.rows for s in plan.shards),
        total_bytes=sum(f.bytes for s in plan.shards for f in s.files()),
        column_groups=[ColumnGroup(name=g, columns=cols) for g, cols in opts.column_groups.items()]
        or None,
        encryption=None
        if plan.escrow is None
        else {
            k.group: GroupEncryption(key_commitment=k.key_commitment) for k in _escrow(plan).keys
        },
        spec_version=2 if opts.column_groups or plan.escrow is not None else 1,
    )
    env = sign_statement(manifest, [key])
    plan.manifest = env.to_dict()
    plan.save()
    return env


def _result(
    plan: Plan,
    env: Envelope,
    *,
    uploaded: int,
    sent: int,
    skipped: int,
    encoded: bool,
    again: bool,
) -> PublishResult:
    m = DatasetManifest.from_json_obj(json.loads(env.payload))
    return PublishResult(
        dataset=m.dataset,
        version=m.version,
        digest=env.digest,
        shards=tuple(m.shards),
        total_rows=m.total_rows,
        total_bytes=m.total_bytes,
        blobs_uploaded=uploaded,
        bytes_uploaded=sent,
        blobs_skipped=skipped,
        encoded=encoded,
        already_published=again,
        staging_dir=plan.directory,
    )


def publish(
    client: RegistryClient,
    sources: Source | Sequence[Source],
    *,
    dataset: str,
    license: str,
    terms: str,
    description: str = "",
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    compression: Compression = "zstd",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    key: SigningKey | None = None,
    progress: bool = True,
    upload_piece_bytes: int = UPLOAD_PIECE_BYTES,
    column_groups: Mapping[str, Sequence[str]] | None = None,
    encrypt: bool = True,
    chunk_digest: ChunkDigest = PUBLISH_CHUNK_DIGEST,
) -> PublishResult:
    """Publish ``sources`` as the next version of ``dataset``; see the module docstring.

    ``encrypt`` (the default) seals every blob under fresh data keys, one per column group
    (ENCRYPTION.md); only the publisher's escrow and the grants it approves open them. ``False``
    is for public data.

    ``column_groups`` (name → columns) stores those columns in blobs of their own (SPEC 2.6),
    which a grant may cover or not and the registry serves only under a grant covering them;
    the other columns form the group ``default``.

    ``chunk_digest`` is the chunk lists' digest algorithm (SPEC 2.5): ``blake3`` (the default,
    about a quarter of SHA-256's CPU per byte to publish and to read) or ``sha256``, for readers
    that predate ``blake3`` (their manifest then leaves the field out).

    ``key`` signs the manifest (default: the client's identity); it must be a key of the
    namespace's owner. Raises :class:`MalformedError` for unreadable inputs or schemas that do
    not match (with a per-column diff), and the registry's errors as they are.
    """
    opts = _Options(
        dataset=dataset,
        license=license,
        terms=terms,
        description=description,
        shard_bytes=shard_bytes,
        compression=compression,
        chunk_bytes=chunk_bytes,
        upload_piece_bytes=upload_piece_bytes,
        column_groups={g: list(cols) for g, cols in (column_groups or {}).items()},
        encrypt=encrypt,
        chunk_digest=chunk_digest,
    )
    opts.check()  # before an encode that might take minutes
    key = key or client.key
    inputs = open_inputs(sources)
    schema = unify_schemas([(i.label, i.schema) for i in inputs])
    opts.check_groups(schema)
    ns, name = split_dataset(dataset)
    plan = open_plan(client.config.staging_dir / ns / name, inputs, opts.keyed(schema))
    latest_version, latest_digest = _latest(client, dataset)

    with ExitStack() as stack:
        if plan.ephemeral:
            stack.callback(shutil.rmtree, plan.directory, ignore_errors=True)
        # Already done? Same inputs, and the registry's latest version is what we published
        # (perhaps by a run that died before it heard the answer).
        if plan.manifest is not None and latest_digest == Envelope.from_dict(plan.manifest).digest:
            env = Envelope.from_dict(plan.manifest)
            return _result(plan, env, uploaded=0, sent=0, skipped=0, encoded=False, again=True)
        bar = stack.enter_context(_progress(progress))
        version = latest_version + 1
        encoded = not plan.encoded or (
            encrypt and (plan.escrow is None or _escrow(plan).keys[0].version != version)
        )
        task = bar.add_task("uploading", total=None)
        uploader = Uploader(
            client,
            UploadSessions(plan.directory.parent / "uploads.json"),
            namespace=ns,
            piece_bytes=upload_piece_bytes,
            on_bytes=lambda n: bar.advance(task, n),
        )
        try:  # each shard is uploaded while the next is being encoded
            if encoded:
                _encode(
                    inputs,
                    schema,
                    plan,
                    opts,
                    key=key,
                    version=version,
                    progress=bar,
                    on_shard=uploader.add,
                )
            else:
                for shard in plan.shards:
                    uploader.add(shard)
            env = _build_manifest(plan, opts, key=key, latest=(latest_version, latest_digest))
            uploaded, sent, skipped = uploader.finish()
        except BaseException:
            uploader.cancel()
            raise
        try:
            client.publish_version(env)
        except ConflictError:
            # Maybe our own earlier attempt got through and only the answer was lost.
            if client.get_manifest_envelope(dataset, "latest").digest != env.digest:
                raise
        if plan.escrow is not None:
            escrow = Envelope.from_dict(plan.escrow)
            publish_keys(client, escrow, _escrow_keys(plan, key), dataset=dataset)
        plan.mark_published(version=version, digest=env.digest)
        return _result(
            plan, env, uploaded=uploaded, sent=sent, skipped=skipped, encoded=encoded, again=False
        )
    raise AssertionError("unreachable")  # pragma: no cover


def _encode(
    inputs: list[Input],
    schema: pa.Schema,
    plan: Plan,
    opts: _Options,
    *,
    key: SigningKey,
    version: int,
    progress: Progress,
    on_shard: Callable[[ShardFile], None],
) -> None:
    """Encode the plan's shards, each handed to ``on_shard`` once written; encrypted, under a
    fresh data key per column group whose escrow (wrapped to the publisher's own
    identity-derived key) the plan keeps instead of the keys."""
    groups = [DEFAULT_GROUP, *opts.column_groups]
    keys = {g: DataKey.generate() for g in groups} if opts.encrypt else {}

    def seal(shard: int, group: str) -> ShardCipher:
        context = GroupContext(dataset=opts.dataset, version=version, group=group)
        return ShardCipher(keys[group], context=context, shard=shard, chunk_bytes=opts.chunk_bytes)

    encode(
        inputs,
        schema,
        plan,
        shard_bytes=opts.shard_bytes,
        chunk_bytes=opts.chunk_bytes,
        compression=opts.compression,
        progress=progress,
        groups=opts.column_groups,
        seal=seal if keys else None,
        on_shard=on_shard,
        chunk_digest=opts.chunk_digest,
    )
    if keys:
        escrow = key_grant_envelope(
            key,
            {version: keys},
            dataset=opts.dataset,
            grantee=key.keyid,
            recipient=identity_encryption_key(key).public,
            grant=None,
            created=utc_now(),
        )
        plan.escrow = escrow.to_dict()
        plan.save()


def _escrow(plan: Plan) -> KeyGrant:
    """The plan's escrow key grant (read back from our own staging area, not verified)."""
    assert plan.escrow is not None
    return KeyGrant.from_json_obj(json.loads(Envelope.from_dict(plan.escrow).payload))


def _escrow_keys(plan: Plan, key: SigningKey) -> dict[int, dict[str, DataKey]]:
    return by_version(open_key_grant(_escrow(plan), private=identity_encryption_key(key)))


def _latest(client: RegistryClient, dataset: str) -> tuple[int, str | None]:
    """The registry's latest version of ``dataset`` and its manifest digest (0, ``None``)."""
    detail = client.find_dataset(dataset)
    if detail is None or not detail.latest_version:
        return 0, None
    return detail.latest_version, client.get_manifest_envelope(
        dataset, detail.latest_version
    ).digest


def _check_license(license: str) -> None:
    if not re.match(SPDX_PATTERN, license):
        raise MalformedError(
            f"licence {license!r} is not an SPDX identifier",
            hint="e.g. CC-BY-4.0, MIT, or LicenseRef-yourorg-terms for custom terms",
        )
