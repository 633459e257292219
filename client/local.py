"""Read a pulled copy offline, verified: :func:`open_pulled` (for nodes that cannot reach the
registry).

A directory written by :func:`~ostraca.client.pull.pull` (layout in ``pull.py``) holds the
manifest and grant envelopes byte for byte, the publisher keys trusted when it was pulled, every
shard and every chunk list. :func:`open_pulled` re-verifies it with no network, in the same
order as streaming does:

1. The manifest envelope against the publisher keys: the ones given explicitly, else the keys
   pinned for the namespace in ``home`` (``$OSTRACA_HOME``), else the ``keys.json`` that pull
   recorded (which only guards against corruption: whoever can rewrite the copy can rewrite it).
2. The grant envelope (``verify_grant`` with ``now``): signed by the manifest's key, for this
   dataset and version, valid now — an expired grant refuses, so training from a pulled copy
   still honours the licence window — and covering the columns asked for. A revocation made
   after the pull cannot be seen offline; only streaming can check for one.
3. Each shard as it is read: its chunk list against the manifest, then every chunk against the
   chunk list and the file's length against the manifest (:class:`~.fetch.ChunkVerifier`, the
   verifier streaming and ``ostraca verify`` use; with the chunk list signed through the
   manifest this authenticates every byte, SPEC 2.5). A local shard is checked whole before any
   of its rows is decoded — on a prefetch thread, ahead of the consumer — so no row of a
   tampered shard is ever yielded (streaming's ``verify="shard"`` guarantee). It is decoded by
   the same function as a streamed one (:func:`~.stream.decode_shard`).

Like the verified cache, a shard is memory-mapped after it verified: the copy must not be
rewritten while a trainer reads it.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from ostraca.protocol_spec import (
    AccessGrant,
    DatasetManifest,
    DigestMismatchError,
    Envelope,
    MalformedError,
    ScopeError,
    ShardEntry,
    SigningKey,
    VerificationError,
    Verified,
    VerifyKey,
    split_dataset,
    utc_now,
    verify_grant,
    verify_manifest,
)
from ostraca.protocol_spec.chunks import DEFAULT_CHUNK_DIGEST

from .config import load_config, ostraca_home
from .encryption import KeyRing, identity_encryption_key
from .export import TableExports
from .fetch import ChunkVerifier
from .keystore import load_signing_key
from .trust import TrustStore
from .verified import VerifiedVersion, decode_shard

MANIFEST_FILE = "manifest.json"
GRANT_FILE = "grant.json"
KEYS_FILE = "keys.json"
KEY_GRANTS_FILE = "key-grants.json"
SHARDS_DIR = "shards"
CHUNKS_DIR = "chunks"


# ── the envelopes ──────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True, slots=True)
class CopyKeys:
    """The publisher keys a copy is checked against, and where they came from."""

    namespace: str
    keys: dict[str, VerifyKey]
    source: str
    retired: dict[str, tuple[VerifyKey, datetime]] = field(default_factory=dict)


def copy_keys(
    directory: Path,
    *,
    home: Path | None = None,
    publisher_keys: Mapping[str, VerifyKey] | Sequence[VerifyKey] | None = None,
) -> CopyKeys:
    """The keys to verify ``directory``'s manifest with: explicit, else pinned in ``home``,
    else the copy's ``keys.json``."""
    data = json.loads((directory / KEYS_FILE).read_text())
    ns = str(data["namespace"])
    if publisher_keys is not None:
        given = (
            list(publisher_keys.values())
            if isinstance(publisher_keys, Mapping)
            else list(publisher_keys)
        )
        return CopyKeys(ns, {k.keyid: k for k in given}, "keys given explicitly")
    if home is not None:
        store = TrustStore(home)
        pinned = store.pinned(ns)
        if pinned is not None:  # with the keys rotated away from, for what they signed before
            return CopyKeys(ns, dict(pinned), f"keys pinned in {home}", store.retired(ns))
    keys = {}
    for keyid, b64 in dict(data["keys"]).items():
        key = VerifyKey.from_b64(str(b64))
        if key.keyid != keyid:
            raise MalformedError(f"{KEYS_FILE}: key {keyid[:16]}… has another id")
        keys[keyid] = key
    return CopyKeys(ns, keys, f"{KEYS_FILE} (no pin for this namespace here)")


def verify_copy_manifest(
    directory: Path, keys: CopyKeys, *, now: datetime
) -> tuple[Verified[DatasetManifest], Envelope]:
    """Check ``manifest.json``'s signature (and that it is of the keys' namespace)."""
    envelope = Envelope.from_json((directory / MANIFEST_FILE).read_bytes())
    manifest = verify_manifest(envelope, publisher_keys=keys.keys, now=now, retired=keys.retired)
    ns, _ = split_dataset(manifest.statement.dataset)
    if ns != keys.namespace:
        raise ScopeError(f"the manifest is for {manifest.statement.dataset}, not namespace {ns}")
    return manifest, envelope


def verify_copy_grant(
    directory: Path,
    manifest: Verified[DatasetManifest],
    *,
    now: datetime,
    grantee: str | None = None,
    columns: Sequence[str] | None = None,
    home: Path | None = None,
) -> tuple[Verified[AccessGrant], Envelope]:
    """Check ``grant.json`` for ``manifest`` (``grantee``: the key it must name; default the
    one it names). The grant may be signed by a key the manifest's signer was rotated to, as
    the trust store of ``home`` (default ``$OSTRACA_HOME``) has verified (SPEC 5.2 G2)."""
    envelope = Envelope.from_json((directory / GRANT_FILE).read_bytes())
    if grantee is None:
        payload = json.loads(envelope.payload)
        grantee = str(payload.get("grantee", "")) if isinstance(payload, dict) else ""
    ns, _ = split_dataset(manifest.statement.dataset)
    successors = TrustStore(home or ostraca_home()).successors(ns, manifest.signer.keyid)
    grant = verify_grant(
        envelope,
        manifest=manifest,
        grantee=grantee,
        now=now,
        columns=columns,
        successors=successors,
    )
    return grant, envelope


# ── the shards ──────────────────────────────────────────────────────────────────────────────
def shard_path(directory: Path, entry: ShardEntry) -> Path:
    return directory / SHARDS_DIR / entry.sha256


def verify_shard_file(
    directory: Path,
    entry: ShardEntry,
    *,
    chunk_bytes: int,
    what: str,
    fd: int | None = None,
    chunk_digest: str = DEFAULT_CHUNK_DIGEST,
) -> None:
    """Check a copy's shard: its chunk list against the manifest, each chunk against the list
    (one ``chunk_digest`` pass over the file), its length against the manifest. Raises
    :class:`DigestMismatchError` (or :class:`VerificationError` for a missing file). ``fd``: the
    shard, already open."""
    try:
        chunks = (directory / CHUNKS_DIR / entry.chunks).read_bytes()
    except FileNotFoundError:
        raise VerificationError(f"{what}: chunk list missing") from None
    if hashlib.sha256(chunks).hexdigest() != entry.chunks:
        raise DigestMismatchError(f"{what}: chunk list does not match the manifest")
    own = fd is None
    if fd is None:
        try:
            fd = os.open(shard_path(directory, entry), os.O_RDONLY)
        except FileNotFoundError:
            raise VerificationError(f"{what}: file missing") from None
    try:
        size = os.fstat(fd).st_size
        if size != entry.bytes:
            raise DigestMismatchError(f"{what}: {size} bytes, the manifest says {entry.bytes}")
        verifier = ChunkVerifier(
            name=what,
            digest=entry.sha256,
            size=entry.bytes,
            chunk_bytes=chunk_bytes,
            chunk_list=chunks,
            fd=fd,
            chunk_digest=chunk_digest,
        )
        good = verifier.resume_existing()
        if good < entry.bytes:
            bad = good // chunk_bytes
            raise DigestMismatchError(
                f"{what}: chunk {bad} (bytes {bad * chunk_bytes}.."
                f"{min(entry.bytes, (bad + 1) * chunk_bytes) - 1}) does not match the signed "
                "chunk list"
            )
        verifier.finish()
    finally:
        if own:
            os.close(fd)


# ── the source ──────────────────────────────────────────────────────────────────────────────
class PulledDataset(VerifiedVersion, TableExports):
    """A pulled copy, verified (a :class:`~ostraca.client.source.ShardSource`); see the module
    doc. Picklable: a DataLoader worker or another process re-opens (and re-verifies) it."""

    def __init__(
        self,
        directory: Path,
        *,
        manifest: Verified[DatasetManifest],
        grant: Verified[AccessGrant],
        keys: CopyKeys,
        columns: Sequence[str] | None,
        prefetch: int,
        reopen: dict[str, Any],
        data_keys: KeyRing | None = None,
    ) -> None:
        super().__init__(
            manifest=manifest,
            grant=grant,
            columns=columns,
            prefetch=prefetch,
            data_keys=data_keys,
        )
        self.directory = directory
        self.keys = keys
        self._reopen = reopen

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (self.directory, self._reopen))

    # ShardSource (the rest is VerifiedVersion's)

    def _what(self, index: int) -> str:
        m = self.manifest.statement
        return f"shard {index} ({m.shards[index].sha256[:12]}…) of {m.dataset}@{m.version}"

    def read_shards(
        self, order: Sequence[int], *, columns: Sequence[str] | None = None
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Yield ``(shard_index, batch)`` for the shards in ``order``, each shard verified
        whole (on a prefetch thread, ``prefetch`` shards ahead) before any of its rows."""
        cols = self.columns if columns is None else self._check_columns(columns)
        n = len(self.manifest.statement.shards)
        for i in order:
            if not 0 <= i < n:
                raise IndexError(f"shard index {i} out of range (0..{n - 1})")
        return self._read(list(order), cols)

    def _read(
        self, order: list[int], cols: list[str] | None
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        pool = ThreadPoolExecutor(max_workers=self.prefetch + 1, thread_name_prefix="ostraca-copy")
        pending: deque[tuple[int, Future[memoryview]]] = deque()
        position = 0
        try:
            while position < len(order) or pending:
                while position < len(order) and len(pending) <= self.prefetch:
                    pending.append((order[position], pool.submit(self._open, order[position])))
                    position += 1
                index, opened = pending.popleft()
                view = opened.result()
                yield from ((index, b) for b in self._decode(index, view, cols))
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _open(self, index: int) -> memoryview:
        """Verify shard ``index`` and map it (runs on a prefetch thread)."""
        m = self.manifest.statement
        entry = m.shards[index]
        try:
            fd = os.open(shard_path(self.directory, entry), os.O_RDONLY)
        except FileNotFoundError:
            raise VerificationError(f"{self._what(index)}: file missing") from None
        try:
            verify_shard_file(
                self.directory,
                entry,
                chunk_bytes=m.chunk_bytes,
                what=self._what(index),
                fd=fd,
                chunk_digest=m.chunk_algorithm,
            )
            if entry.bytes == 0:
                return memoryview(b"")
            return memoryview(mmap.mmap(fd, entry.bytes, prot=mmap.PROT_READ))
        finally:
            os.close(fd)

    def _decode(
        self, index: int, view: memoryview, cols: list[str] | None
    ) -> Iterator[pa.RecordBatch]:
        return decode_shard(
            self.plaintext(index, self.manifest.statement.shards[index].blobs()[0], view),
            full_schema=self._full_schema,
            columns=cols,
            rows=self.manifest.statement.shards[index].rows,
            what=self._what(index),
        )

    # conveniences

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for _, batch in self.read_shards(range(len(self.shard_rows))):
            yield batch

    def to_table(self, *, columns: Sequence[str] | None = None) -> pa.Table:
        cols = self.columns if columns is None else self._check_columns(columns)
        batches = [b for _, b in self.read_shards(range(len(self.shard_rows)), columns=cols)]
        return pa.Table.from_batches(batches, schema=self._projected_schema(cols))

    def close(self) -> None:
        """Nothing to release (kept for symmetry with the streamed source)."""

    def __enter__(self) -> PulledDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reopen(directory: Path, kwargs: dict[str, Any]) -> PulledDataset:
    keys = kwargs.pop("publisher_keys_b64", None)
    if keys is not None:
        kwargs["publisher_keys"] = [VerifyKey.from_b64(k) for k in keys]
    return open_pulled(directory, **kwargs)


def open_pulled(
    directory: Path | str,
    *,
    publisher_keys: Mapping[str, VerifyKey] | Sequence[VerifyKey] | None = None,
    home: Path | None = None,
    grantee: str | None = None,
    columns: Sequence[str] | None = None,
    now: datetime | None = None,
    prefetch: int = 2,
    identity: SigningKey | None = None,
) -> PulledDataset:
    """Open a pulled copy as a verified :class:`~ostraca.client.source.ShardSource`, offline.

    An encrypted copy is opened with the encryption key derived from ``identity`` (default: the
    identity of ``home``'s configuration), from the key grants the pull kept.

    ``publisher_keys`` (trusted keys) default to those pinned in ``home`` for the dataset's
    namespace, else to the copy's ``keys.json``; ``grantee`` (a key id the grant must name)
    defaults to the grant's own. Raises :class:`SignatureError`, :class:`UntrustedKeyError`,
    :class:`ExpiredError` (the grant's window has closed), :class:`ScopeError`, … as streaming
    does; shards are verified as they are read (:meth:`PulledDataset.read_shards`).
    """
    directory = Path(directory)
    reopen: dict[str, Any] = {  # a re-opening process checks the grant at its own time
        "home": home,
        "grantee": grantee,
        "columns": None if columns is None else list(columns),
        "now": now,
        "prefetch": prefetch,
    }
    now = now or utc_now()
    keys = copy_keys(directory, home=home, publisher_keys=publisher_keys)
    manifest, _ = verify_copy_manifest(directory, keys, now=now)
    grant, _ = verify_copy_grant(
        directory, manifest, now=now, grantee=grantee, columns=columns, home=home
    )
    data_keys = None
    if manifest.statement.encryption:
        if identity is None:
            config = load_config(home=home)
            identity = load_signing_key(config.identity_path, passphrase=config.passphrase)
        data_keys = copy_data_keys(
            directory, manifest, grant, keys=keys, identity=identity, now=now
        )
    if publisher_keys is not None:
        reopen["publisher_keys_b64"] = [k.b64 for k in keys.keys.values()]
    return PulledDataset(
        directory,
        manifest=manifest,
        grant=grant,
        keys=keys,
        columns=columns,
        prefetch=prefetch,
        reopen=reopen,
        data_keys=data_keys,
    )


def copy_data_keys(
    directory: Path,
    manifest: Verified[DatasetManifest],
    grant: Verified[AccessGrant],
    *,
    keys: CopyKeys,
    identity: SigningKey,
    now: datetime,
) -> KeyRing:
    """The data keys of an encrypted copy: its ``key-grants.json`` verified against the copy's
    publisher keys and opened with the encryption key derived from ``identity``."""
    try:
        items = json.loads((directory / KEY_GRANTS_FILE).read_bytes())
    except FileNotFoundError:
        items = []
    except ValueError as exc:
        raise MalformedError(f"{directory / KEY_GRANTS_FILE} is not JSON: {exc}") from exc
    private = identity_encryption_key(identity)
    ring = KeyRing(manifest.statement.dataset)
    ring.add(
        [Envelope.from_dict(i) for i in items],
        # the grant's signer (the manifest's or a successor, verified above) signs its keys
        publisher_keys={**keys.keys, grant.signer.keyid: grant.signer},
        grantee=grant.statement.grantee,
        privates={private.public.keyid: private},
        grants={grant.digest: grant.statement},
        now=now,
    )
    return ring
