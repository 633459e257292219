"""What every verified source of a dataset version shares, streamed (``stream.py``) or pulled
(``local.py``): the verified manifest and grant (:class:`VerifiedVersion`), the caller's grant
found among the registry's and verified locally (:func:`find_grant`), and the one shard decoder
(:func:`decode_shard`) that checks a shard's schema and row count against the manifest.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from ostraca.protocol_spec import (
    AccessDeniedError,
    AccessGrant,
    DatasetManifest,
    Envelope,
    MalformedError,
    OstracaError,
    ScopeError,
    VerificationError,
    Verified,
    VerifyKey,
    split_dataset,
    verify_grant,
)
from ostraca.protocol_spec.crypto import ShardCipher
from ostraca.protocol_spec.errors import MissingKeyError
from ostraca.protocol_spec.models import GroupBlob
from ostraca.protocol_spec.verify import granted_columns
from ostraca.protocol_spec.wire import GrantItem

from .encryption import KeyRing, opened
from .problems import request_hint
from .source import Provenance

if TYPE_CHECKING:
    from .api import RegistryClient

__all__ = ["VerifiedVersion", "decode_shard", "find_grant", "zip_groups"]


def decode_shard(
    source: memoryview | io.RawIOBase,
    *,
    full_schema: pa.Schema,
    columns: list[str] | None,
    rows: int,
    what: str,
) -> Iterator[pa.RecordBatch]:
    """Decode one shard (an Arrow IPC stream) into record batches of ``columns`` (all: ``None``).

    ``source`` is the shard's bytes (already verified: decoded zero-copy) or a file-like object
    that hands out only verified bytes (:class:`_VerifiedReader`). The shard's schema must be
    the manifest's (``full_schema``, projected) and it must hold exactly ``rows`` rows; a stream
    Arrow cannot parse is :class:`MalformedError`. ``what`` names the shard in errors. Used by
    streaming and by pulled copies (``local.py``) alike.
    """
    options = None
    expected = full_schema
    if columns is not None:
        idx = sorted(full_schema.get_field_index(c) for c in columns)
        options = pa.ipc.IpcReadOptions(included_fields=idx)
        expected = pa.schema([full_schema.field(i) for i in idx])
    reader_source = (
        pa.BufferReader(pa.py_buffer(source)) if isinstance(source, memoryview) else source
    )
    count = 0
    try:
        reader = pa.ipc.open_stream(reader_source, options=options)
        if not reader.schema.equals(expected):
            raise VerificationError(f"{what}: its Arrow schema differs from the manifest's")
        for batch in reader:
            count += batch.num_rows
            yield batch if columns is None else batch.select(columns)
    except pa.ArrowException as exc:
        raise MalformedError(f"{what}: not a valid Arrow IPC stream: {exc}") from exc
    if count != rows:
        raise VerificationError(f"{what}: holds {count} rows, the manifest says {rows}")


def zip_groups(
    streams: list[Iterator[pa.RecordBatch]], schema: pa.Schema, *, what: str
) -> Iterator[pa.RecordBatch]:
    """One record batch of ``schema`` per row range from the batches of a shard's column groups,
    which hold the same rows in the same record batches (SPEC 2.6)."""
    sentinel = None
    for parts in itertools.zip_longest(*streams, fillvalue=sentinel):
        if any(p is None for p in parts) or len({p.num_rows for p in parts}) != 1:
            raise VerificationError(f"{what}: its column groups' record batches do not line up")
        columns = {n: c for p in parts for n, c in zip(p.schema.names, p.columns, strict=True)}
        yield pa.RecordBatch.from_arrays([columns[n] for n in schema.names], schema=schema)


class VerifiedVersion:
    """What every verified source of a dataset version shares: the verified manifest and grant,
    the Arrow schema they commit to, provenance, and the column projection the grant allows."""

    def __init__(
        self,
        *,
        manifest: Verified[DatasetManifest],
        grant: Verified[AccessGrant],
        columns: Sequence[str] | None,
        prefetch: int,
        data_keys: KeyRing | None = None,
    ) -> None:
        self.manifest = manifest
        self.grant = grant
        self.prefetch = max(0, prefetch)
        self.data_keys = data_keys
        m = manifest.statement
        self._full_schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(m.arrow_schema)))
        if self._full_schema.names != [c.name for c in m.columns]:
            raise VerificationError("the manifest's Arrow schema does not match its column list")
        self._groups = m.group_columns()
        self._granted = granted_columns(grant.statement, m)
        self.columns: list[str] | None = self._check_columns(columns)
        for blob in self.blobs_for(self.columns)(0):  # no key for a group read: fail before
            self._cipher(0, blob.group)  # any fetch

    def _cipher(self, index: int, group: str) -> ShardCipher | None:
        """The cipher of shard ``index``'s blob of ``group`` when the group is encrypted
        (ENCRYPTION.md 2.5: no key → ``missing_key``, one the manifest does not commit to →
        ``wrong_key``)."""
        m = self.manifest.statement
        record = (m.encryption or {}).get(group)
        if record is None:
            return None
        if self.data_keys is None:
            raise MissingKeyError(
                f"{m.dataset} version {m.version} group {group!r} is encrypted and no data key "
                "was given"
            )
        return self.data_keys.cipher(
            version=m.version,
            group=group,
            commitment=record.key_commitment,
            shard=index,
            chunk_bytes=m.chunk_bytes,
        )

    def plaintext(
        self, index: int, blob: GroupBlob, source: memoryview | io.RawIOBase
    ) -> memoryview | io.RawIOBase:
        """Shard ``index``'s verified ``blob`` as plaintext: opened chunk by chunk, in the same
        pass, when its group is encrypted; as it is otherwise."""
        cipher = self._cipher(index, blob.group)
        if cipher is None:
            return source
        return opened(source, size=blob.bytes, cipher=cipher)

    # ShardSource

    @property
    def provenance(self) -> Provenance:
        m = self.manifest.statement
        return Provenance(
            dataset=m.dataset,
            version=m.version,
            manifest_digest=self.manifest.digest,
            license=m.license,
            terms_sha256=m.terms_sha256,
            grant_id=self.grant.digest,
            publisher=m.publisher,
        )

    @property
    def shard_rows(self) -> Sequence[int]:
        return [s.rows for s in self.manifest.statement.shards]

    @property
    def schema(self) -> pa.Schema:
        return self._projected_schema(self.columns)

    @property
    def num_rows(self) -> int:
        return self.manifest.statement.total_rows

    def blobs_for(self, columns: list[str] | None) -> Callable[[int], list[GroupBlob]]:
        """Shard index → the blobs holding ``columns`` (all: ``None``): those of their column
        groups only, so reading one group moves only that group's bytes."""
        wanted = set(self._full_schema.names if columns is None else columns)
        groups = [g for g, cols in self._groups.items() if wanted & set(cols)]
        shards = self.manifest.statement.shards

        def blobs(index: int) -> list[GroupBlob]:
            return [b for b in shards[index].blobs() if b.group in groups]

        return blobs

    def group_schema(self, group: str) -> pa.Schema:
        """The schema of ``group``'s blobs: the manifest's fields of its columns (all of them for
        a manifest without column groups)."""
        if len(self._groups) == 1:
            return self._full_schema
        return pa.schema([self._full_schema.field(c) for c in self._groups[group]])

    def group_part(self, group: str, columns: list[str] | None) -> list[str] | None:
        """The columns of ``columns`` (all: ``None``) that ``group``'s blobs hold."""
        if columns is None:
            return None
        return [c for c in columns if c in self._groups[group]]

    def _check_columns(self, columns: Sequence[str] | None) -> list[str] | None:
        allowed = self._granted
        if columns is None:  # what the grant covers (every column: None)
            return None if allowed == self._full_schema.names else allowed
        cols = list(columns)
        unknown = [c for c in cols if c not in self._full_schema.names]
        if unknown:
            raise MalformedError(
                f"{self.manifest.statement.dataset} has no column(s) {', '.join(unknown)} "
                f"(columns: {', '.join(self._full_schema.names)})"
            )
        if not set(cols) <= set(allowed):
            missing = ", ".join(sorted(set(cols) - set(allowed)))
            raise ScopeError(f"your grant does not cover column(s) {missing}")
        return cols

    def _projected_schema(self, columns: list[str] | None) -> pa.Schema:
        if columns is None:
            return self._full_schema
        return pa.schema([self._full_schema.field(c) for c in columns])


def find_grant(
    items: Sequence[GrantItem],
    *,
    manifest: Verified[DatasetManifest],
    grantee: str,
    now: datetime,
    columns: Sequence[str] | None,
    successors: Mapping[str, VerifyKey] | None = None,
) -> tuple[Verified[AccessGrant], Envelope]:
    """The caller's best grant for ``manifest`` among ``items``, verified locally. ``grantee``
    is the caller's stable principal id (``RegistryClient.principal_id``, the key it registered
    with), which grants name also after it rotated its key (SPEC.md 3.3).

    Grants the registry reports revoked count as revoked (check G12); the one valid longest
    wins. When every grant of the caller failed for the same reason (all revoked, all expired),
    that error is raised, so the message says what happened rather than only "no grant".
    """
    dataset = manifest.statement.dataset
    revoked = {i.grant_id for i in items if i.revoked}
    usable: list[tuple[Verified[AccessGrant], Envelope]] = []
    failures: list[OstracaError] = []
    reasons: list[str] = []
    for item in items:
        if item.grantee != grantee or item.dataset != dataset:
            continue
        try:
            env = Envelope.from_dict(item.envelope)
            v = verify_grant(
                env,
                manifest=manifest,
                grantee=grantee,
                now=now,
                revoked=revoked,
                columns=columns,
                successors=successors,
            )
        except OstracaError as exc:
            failures.append(exc)
            reasons.append(f"grant {item.grant_id[:12]}…: {exc.message}")
            continue
        usable.append((v, env))
    if not usable:
        why = f" ({'; '.join(reasons)})" if reasons else ""
        kinds = {type(f) for f in failures}
        error = kinds.pop() if len(kinds) == 1 else AccessDeniedError
        if not issubclass(error, AccessDeniedError):
            error = AccessDeniedError
        raise error(
            f"no valid grant of yours covers {dataset} version {manifest.statement.version}{why}",
            hint=request_hint(dataset),
        )
    return max(usable, key=lambda ve: ve[0].statement.expires)


def check_grantable(
    client: RegistryClient, dataset: str, *, min_version: int, max_version: int | None
) -> None:
    """Refuse, before anything is signed, a grant by ``client``'s key that a researcher could
    not verify (SPEC.md 5.2, G2): every version it covers must be signed by this key or by a key
    this key succeeded through key rotations. Reads the registry's listing: a convenience for
    the publisher, not a security check (the researcher's client verifies for real)."""
    ns, _ = split_dataset(dataset)
    listed = {k.keyid: k for k in client.get_namespace(ns).keys}
    lineage = {client.keyid}
    while changed := {k for k, info in listed.items() if info.successor in lineage} - lineage:
        lineage |= changed
    detail = client.get_dataset(dataset)
    last = detail.latest_version if max_version is None else min(max_version, detail.latest_version)
    for version in range(min_version, last + 1):
        payload = json.loads(client.get_manifest_envelope(dataset, version).payload)
        signer = str(payload.get("publisher", ""))
        if signer not in lineage:
            raise MalformedError(
                f"a grant by key {client.keyid[:16]}… could not verify for {dataset} version "
                f"{version}, which key {signer[:16]}… signed (not this key, nor one it succeeded)",
                hint="approve with the key that signed that version, or limit --versions",
            )
