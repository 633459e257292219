"""What every verified source of a dataset version shares, streamed (``stream.py``) or pulled
(``local.py``): the verified manifest and grant (:class:`VerifiedVersion`), the caller's grant
found among the registry's and verified locally (:func:`find_grant`), and the one shard decoder
(:func:`decode_shard`) that checks a shard's schema and row count against the manifest.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Sequence
from datetime import datetime

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
    verify_grant,
)
from ostraca.protocol_spec.wire import GrantItem

from .problems import request_hint
from .source import Provenance

__all__ = ["VerifiedVersion", "decode_shard", "find_grant"]


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
    ) -> None:
        self.manifest = manifest
        self.grant = grant
        self.prefetch = max(0, prefetch)
        m = manifest.statement
        self._full_schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(m.arrow_schema)))
        if self._full_schema.names != [c.name for c in m.columns]:
            raise VerificationError("the manifest's Arrow schema does not match its column list")
        self.columns: list[str] | None = self._check_columns(columns)

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

    def _check_columns(self, columns: Sequence[str] | None) -> list[str] | None:
        allowed = self.grant.statement.columns
        if columns is None:
            return None if allowed is None else [n for n in self._full_schema.names if n in allowed]
        cols = list(columns)
        unknown = [c for c in cols if c not in self._full_schema.names]
        if unknown:
            raise MalformedError(
                f"{self.manifest.statement.dataset} has no column(s) {', '.join(unknown)} "
                f"(columns: {', '.join(self._full_schema.names)})"
            )
        if allowed is not None and not set(cols) <= set(allowed):
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
) -> tuple[Verified[AccessGrant], Envelope]:
    """The caller's best grant for ``manifest`` among ``items``, verified locally.

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
                env, manifest=manifest, grantee=grantee, now=now, revoked=revoked, columns=columns
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
