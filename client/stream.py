"""Verified streaming: open a dataset version, get Arrow record batches whose bytes were checked.

:func:`open_dataset` does, in order:

1. Resolve the namespace's publisher keys: pinned ones, or the registry's on first use (TOFU,
   printed); a changed key set is refused unless a key rotation links it (``trust.py``).
2. Fetch and verify the manifest: signature by a pinned key, the hash chain against the newest
   version this client trusts (rollback and fork detection, intermediate versions walked).
3. Find the caller's grant in the registry's grant list and verify it **locally**
   (``verify_grant``: signed by the manifest's publisher key, this dataset, this grantee, this
   version, these columns, valid now, not revoked). No usable grant → :class:`AccessDeniedError`
   whose hint is the ``ostraca request`` command.

The :class:`VerifiedDataset` it returns implements :class:`~ostraca.client.source.ShardSource`.
Shards are fetched ahead by a small thread pool into the cache's temp file (``fetch.py``: each
piece received into a small reused buffer, hashed there and written) while the caller decodes on
its own thread, zero-copy from a memory map of that file.
Each shard's chunk list is fetched first and checked against the manifest; then every
``chunk_bytes`` piece is hashed once, by the fetch thread, as it arrives, and the
Arrow IPC stream decoder reads only bytes whose chunk verified (it blocks on the next chunk
otherwise). The final chunk is released only once every chunk verified and the shard's length
is the manifest's ``bytes`` — which, the chunk list being committed to by the signed manifest,
authenticates every byte of the shard (SPEC 2.5); ``verify="paranoid"`` also recomputes the
whole-shard sha256 (a second pass over every byte).

**The guarantee is per chunk**, as DESIGN.md specifies: no row is yielded before every byte it
was decoded from has been verified against the signed manifest. If chunk *k* of a shard is
tampered with, :class:`DigestMismatchError` (naming the shard and chunk) is raised and nothing
decoded from chunk *k* or later is yielded — but batches lying wholly in chunks ``0..k-1`` of
that shard may already have been yielded (they are authentic: each chunk is committed to by the
signed manifest). Pass ``verify="shard"`` to hold back every batch of a shard until the whole
shard verified (nothing of a tampered shard is ever yielded, at the cost of latency), or
``verify="paranoid"`` for that plus the whole-shard sha256 of every downloaded shard.

Column groups (SPEC 2.6): only the blobs of the groups holding the columns read are fetched
(each verified as above), and their batches, which cover the same rows, are zipped into one
record batch per row range. Naming no columns reads the columns the grant covers.

Shards already in the cache are memory-mapped and decoded zero-copy, trusted by their size unless
``recheck_cache=True`` (SPEC 5.7.1). Before each shard is handed
out the registry is asked whether the grant still holds (a one-byte ``Range`` request), so a
revocation takes effect at the next shard even when its bytes were prefetched or cached.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Literal

import pyarrow as pa

from ostraca.protocol_spec import (
    AccessGrant,
    DatasetManifest,
    DigestMismatchError,
    Envelope,
    MalformedError,
    Verified,
    chunk_list_bytes,
    split_dataset,
    utc_now,
)
from ostraca.protocol_spec.errors import MissingKeyError, UnavailableError
from ostraca.protocol_spec.models import DEFAULT_GROUP, GroupBlob
from ostraca.protocol_spec.wire import KeyGrantItem

from .api import RegistryClient
from .cache import BlobCache
from .cards import NamespaceTrust, resolve_current
from .config import ClientConfig, load_config
from .encryption import ChunkOpener, KeyRing
from .export import TableExports
from .fetch import BlobFetcher, ChunkVerifier
from .keyflow import check_logged, logged_key_grants, reader_keys
from .sinks import BytesSink, CancellableSink, ConsumerGoneError, Opened, VerifiedReader, map_view
from .trust import TrustStore
from .verified import VerifiedVersion, decode_shard, find_grant, zip_groups
from .wire import dataset_path

__all__ = [
    "VerifiedDataset",
    "VerifiedVersion",  # trainer/revocation.py imports it from here (move it to .verified)
    "VerifyUnit",
    "open_dataset",
    "parse_ref",
]

VerifyUnit = Literal["chunk", "shard", "paranoid"]


_Part = tuple[GroupBlob, "Future[Opened]", "Future[None]"]
"""One column group's blob of a shard being read: the blob, its readiness, its fetch job."""


class VerifiedDataset(VerifiedVersion, TableExports):
    """A verified dataset version (a :class:`~ostraca.client.source.ShardSource`).

    Iterate it for every batch in manifest order, or use :meth:`read_shards` for any order
    (the PyTorch adapter does). ``columns`` given to :func:`open_dataset` is the default
    projection; every read is limited to what the grant covers.
    """

    def __init__(
        self,
        *,
        manifest: Verified[DatasetManifest],
        manifest_envelope: Envelope,
        grant: Verified[AccessGrant],
        grant_envelope: Envelope,
        client: RegistryClient,
        cache: BlobCache,
        fetcher: BlobFetcher,
        columns: Sequence[str] | None,
        prefetch: int = 2,
        verify: VerifyUnit = "chunk",
        recheck_access: bool = True,
        recheck_cache: bool = False,
        owns_client: bool = False,
        data_keys: KeyRing | None = None,
    ) -> None:
        super().__init__(
            manifest=manifest,
            grant=grant,
            columns=columns,
            prefetch=prefetch,
            data_keys=data_keys,
        )
        self.manifest_envelope = manifest_envelope
        self.grant_envelope = grant_envelope
        self.client = client
        self.cache = cache
        self.fetcher = fetcher
        self.verify = verify
        self.recheck_access = recheck_access
        self.recheck_cache = recheck_cache or verify == "paranoid"
        self._owns_client = owns_client

    # ShardSource (the rest is VerifiedVersion's)

    def read_shards(
        self, order: Sequence[int], *, columns: Sequence[str] | None = None
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Yield ``(shard_index, batch)`` for the shards in ``order`` (see the module doc)."""
        cols = self.columns if columns is None else self._check_columns(columns)
        shards = self.manifest.statement.shards
        for i in order:
            if not 0 <= i < len(shards):
                raise IndexError(f"shard index {i} out of range (0..{len(shards) - 1})")
        return self._read(list(order), cols)

    def _read(
        self, order: list[int], cols: list[str] | None
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        cancel = threading.Event()
        pool = ThreadPoolExecutor(max_workers=self.prefetch + 1, thread_name_prefix="ostraca-fetch")
        pending: deque[tuple[int, list[_Part]]] = deque()
        position = 0
        blobs = self.blobs_for(cols)

        def submit() -> None:
            nonlocal position
            while position < len(order) and len(pending) <= self.prefetch:
                index = order[position]
                parts: list[_Part] = []
                for blob in blobs(index):  # only the column groups read
                    ready: Future[Opened] = Future()
                    done = pool.submit(self._fetch_shard, index, blob, ready, cancel)
                    parts.append((blob, ready, done))
                pending.append((index, parts))
                position += 1

        committing: list[Future[None]] = []  # jobs whose shard was decoded
        try:
            submit()
            while pending:
                index, parts = pending.popleft()
                submit()
                if self.recheck_access:
                    self.fetcher.check_access(parts[0][0].sha256, what=self._what(index))
                if self.verify != "chunk":
                    for _, _, done in parts:
                        done.result()
                opened = [(blob, _wait_ready(ready, done)) for blob, ready, done in parts]
                yield from ((index, b) for b in self._decode(index, opened, cols))
                for _, o in opened:
                    if o.verifier is not None:  # the end-of-blob checks (every chunk, the length)
                        o.verifier.wait_for(o.verifier.size)
                # A decoded shard's job may still be syncing its copy to disk for the cache
                # (fdatasync: ~0.1-0.2 s for 64 MiB here): the next shard is decoded meanwhile,
                # and a job's failure surfaces at the first shard after it finished.
                committing = [*_finished(committing), *(done for _, _, done in parts)]
            for done in committing:
                done.result()
        finally:
            cancel.set()
            for _, parts in pending:
                for _, ready, done in parts:
                    done.cancel()
                    ready.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            self.fetcher.prune()

    def _what(self, index: int, group: str = DEFAULT_GROUP) -> str:
        m = self.manifest.statement
        part = "" if group == DEFAULT_GROUP else f" column group {group}"
        return f"shard {index}{part} ({m.shards[index].sha256[:12]}…) of {m.dataset}@{m.version}"

    def _decode(
        self, index: int, opened: list[tuple[GroupBlob, Opened]], cols: list[str] | None
    ) -> Iterator[pa.RecordBatch]:
        """Decode the shard's blobs read and zip their batches (the same row ranges in every
        group, SPEC 2.6) into record batches of ``cols``."""
        streams = [
            decode_shard(
                VerifiedReader(o)
                if o.opener is not None  # opened as it verified
                else self.plaintext(
                    index, blob, o.view if o.verifier is None else VerifiedReader(o)
                ),
                full_schema=self.group_schema(blob.group),
                columns=self.group_part(blob.group, cols),
                rows=self.manifest.statement.shards[index].rows,
                what=self._what(index, blob.group),
            )
            for blob, o in opened
        ]
        if len(streams) == 1:
            return streams[0]
        return zip_groups(streams, self._projected_schema(cols), what=self._what(index))

    def chunk_list(self, index: int, blob: GroupBlob | None = None) -> bytes:
        """The chunk list of shard ``index``'s blob of one column group (its own: ``default``),
        checked against the manifest (cached once verified)."""
        m = self.manifest.statement
        entry = blob or m.shards[index].blobs()[0]
        length = chunk_list_bytes(entry.bytes, m.chunk_bytes)
        cached = self.cache.read(entry.chunks, length)
        if cached is not None:  # a few KiB: re-checked at every use (SPEC 5.7.1)
            if hashlib.sha256(cached).hexdigest() == entry.chunks:
                return cached
            self.cache.discard(entry.chunks)
        sink = BytesSink(length)
        self.fetcher.fetch(
            entry.chunks, size=length, sink=sink, what=f"chunk list of {self._what(index)}"
        )
        data = bytes(sink.data)
        if hashlib.sha256(data).hexdigest() != entry.chunks:
            raise DigestMismatchError(
                f"the chunk list of {self._what(index)} does not match the manifest"
            )
        self.cache.put(entry.chunks, data)
        return data

    def _fetch_shard(
        self, index: int, entry: GroupBlob, ready: Future[Opened], cancel: threading.Event
    ) -> None:
        """Runs on a prefetch thread: make shard ``index``'s blob ``entry`` (of one column
        group) readable, verifying as it arrives."""
        what = self._what(index, entry.group)
        try:
            if self._ready_from_cache(index, entry, ready):
                return
            chunks = self.chunk_list(index, entry)
            while True:
                partial = self.cache.acquire(entry.sha256, entry.bytes)
                if partial is None:  # another process or thread finished it meanwhile
                    if self._ready_from_cache(index, entry, ready):
                        return
                    continue
                break
        except BaseException as exc:
            if not ready.done():  # a cached copy that failed its re-check was handed out
                ready.set_exception(exc)
            raise
        keep = False
        try:
            view = map_view(partial.fd, entry.bytes)
            opener = self._opener(index, entry)
            verifier = self._verifier(index, entry, chunks, partial.fd, view, opener)
            offset = 0 if partial.fresh else verifier.resume_existing()
            ready.set_result(Opened(view, verifier, opener))
            try:
                self.fetcher.fetch(
                    entry.sha256,
                    size=entry.bytes,
                    sink=CancellableSink(verifier, cancel),
                    what=what,
                    offset=offset,
                )
                verifier.finish()
            except BaseException as exc:
                keep = isinstance(exc, UnavailableError | ConsumerGoneError)
                verifier.fail(exc)
                raise
            partial.commit()
        except BaseException as exc:
            partial.abort(keep=keep)
            if not ready.done():
                ready.set_exception(exc)
            if isinstance(exc, ConsumerGoneError):
                return
            raise
        # Shards already mapped by this reader stay readable even if evicted (POSIX unlink).
        self.cache.evict(protect=frozenset({entry.sha256}))

    def _opener(self, index: int, entry: GroupBlob) -> ChunkOpener | None:
        """An opener for shard ``index``'s blob of an encrypted group (None: plaintext)."""
        cipher = self._cipher(index, entry.group)
        return None if cipher is None else ChunkOpener(size=entry.bytes, cipher=cipher)

    def _verifier(
        self,
        index: int,
        entry: GroupBlob,
        chunks: bytes,
        fd: int,
        view: memoryview,
        opener: ChunkOpener | None,
    ) -> ChunkVerifier:
        """The blob's chunk verifier; with ``opener``, each chunk of ``view`` is opened on the
        fetch thread as it verifies (decryption overlaps the download and the decoding)."""
        return ChunkVerifier(
            name=self._what(index, entry.group),
            digest=entry.sha256,
            size=entry.bytes,
            chunk_bytes=self.manifest.statement.chunk_bytes,
            chunk_list=chunks,
            fd=fd,
            whole=self.verify == "paranoid",
            chunk_digest=self.manifest.statement.chunk_algorithm,
            on_verified=None if opener is None else functools.partial(opener.open_verified, view),
        )

    def _ready_from_cache(self, index: int, entry: GroupBlob, ready: Future[Opened]) -> bool:
        """Hand out the cached copy of ``entry``, if there is one (SPEC 5.7.1): trusted by its
        size, or with ``recheck_cache`` re-verified chunk by chunk as it is decoded (a copy that
        fails is removed from the cache and the read fails)."""
        fh = self.cache.open(entry.sha256, entry.bytes)
        if fh is None:
            return False
        with fh:
            view = map_view(fh.fileno(), entry.bytes)
        if not self.recheck_cache:
            ready.set_result(Opened(view, None))
            return True
        opener = self._opener(index, entry)
        verifier = self._verifier(index, entry, self.chunk_list(index, entry), -1, view, opener)
        ready.set_result(Opened(view, verifier, opener))
        try:
            verifier.check_stored(view)
        except DigestMismatchError:  # not one that verifies but does not open under this
            self.cache.discard(entry.sha256)  # manifest: that copy is another version's
            raise
        return True

    # conveniences

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self.iter_batches()

    def iter_batches(self, *, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Every batch of every shard, in manifest order."""
        for _, batch in self.read_shards(range(len(self.shard_rows)), columns=columns):
            yield batch

    def to_table(self, *, columns: Sequence[str] | None = None) -> pa.Table:
        cols = self.columns if columns is None else self._check_columns(columns)
        return pa.Table.from_batches(
            list(self.iter_batches(columns=cols)), schema=self._projected_schema(cols)
        )

    def close(self) -> None:
        self.fetcher.close()
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> VerifiedDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wait_ready(ready: Future[Opened], done: Future[None]) -> Opened:
    del done  # the job sets ``ready`` (result or error) before anything else can fail
    return ready.result()


def _stderr(message: str) -> None:
    print(f"ostraca: {message}", file=sys.stderr)


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"ns/name"``, ``"ns/name@latest"`` or ``"ns/name@3"`` → ``("ns/name", None | 3)``."""
    name, at, version = ref.partition("@")
    split_dataset(name)
    if not at or version == "latest":
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise MalformedError(f"bad version in {ref!r}: expected ns/name@N with N ≥ 1")
    return name, int(version)


def open_dataset(
    dataset: str,
    *,
    version: int | None = None,
    columns: Sequence[str] | None = None,
    config: ClientConfig | None = None,
    client: RegistryClient | None = None,
    prefetch: int = 2,
    now: datetime | None = None,
    verify: VerifyUnit = "chunk",
    recheck_access: bool = True,
    recheck_cache: bool = False,
) -> VerifiedDataset:
    """Verify ``dataset`` (``"ns/name"``; ``version`` or the latest) and the caller's grant.

    ``config`` defaults to :func:`~ostraca.client.config.load_config`, ``client`` to a
    :class:`RegistryClient` over it (closed with the dataset). The registry must be reachable
    over TCP at ``client.base_url``: shard bytes bypass httpx (see ``fetch.py``).

    ``recheck_cache`` re-verifies every cached shard chunk by chunk against the signed chunk
    list before its rows are used (SPEC 5.7.1; implied by ``verify="paranoid"``); by default a
    cached shard is trusted by its size, the cache being as private as the client's trust store.
    """
    if client is None:
        cfg = config or load_config()
        client_ = RegistryClient(cfg)
        owns = True
    else:
        cfg = config or client.config
        client_ = client
        owns = False
    try:
        now = now or utc_now()
        ns, _ = split_dataset(dataset)
        store = TrustStore(cfg.home, announce=_stderr)
        keys = store.keys_for(ns, offered=client_.namespace_keys(ns), now=now)
        # DATASET without a version: the newest not deprecated (client/cards.py), after the
        # chain to the newest is verified (a version read before its deprecation is no
        # rollback)
        trust = NamespaceTrust(keys=dict(keys), retired=store.retired(ns), store=store, now=now)
        current = resolve_current(client_, dataset, version=version, trust=trust, warn=_stderr)
        manifest, envelope = current.manifest, current.envelope
        # an encrypted version's key grants come with the grants (one round trip, not two)
        listed: list[KeyGrantItem] | None = None
        if manifest.statement.encryption:
            listing = client_.list_grants_and_key_grants(dataset)
            grants, listed = listing.items, listing.key_grants
        else:
            grants = client_.list_grants(dataset=dataset)
        grant, grant_env = find_grant(
            grants,
            manifest=manifest,
            grantee=client_.principal_id,  # grants name the stable id (SPEC 3.3)
            now=now,
            columns=columns,
            successors=store.successors(ns, manifest.signer.keyid),
        )
        try:
            data_keys = reader_keys(
                client_, manifest, grant, publisher_keys=keys, now=now, listed=listed
            )
        except MissingKeyError:  # a manifest or grant the log refuses says so first
            check_logged(client_, [envelope, grant_env], now=now)
            raise
        # LOG.md L1-L13: the manifest, the grant and the key grants read, in one check
        logged = [envelope, grant_env, *logged_key_grants(data_keys, manifest.statement.version)]
        check_logged(client_, logged, now=now)
        fetcher = BlobFetcher(
            client_.base_url + dataset_path(dataset),
            headers=_locked_headers(client_),
            limits=cfg.limits,
        )
        cache = BlobCache(cfg.cache_path, budget=cfg.cache_bytes)
        return VerifiedDataset(
            manifest=manifest,
            manifest_envelope=envelope,
            grant=grant,
            grant_envelope=grant_env,
            client=client_,
            cache=cache,
            fetcher=fetcher,
            columns=columns,
            prefetch=prefetch,
            verify=verify,
            recheck_access=recheck_access,
            recheck_cache=recheck_cache,
            owns_client=owns,
            data_keys=data_keys,
        )
    except BaseException:
        if owns:
            client_.close()
        raise


def _finished(jobs: list[Future[None]]) -> list[Future[None]]:
    """The jobs still running; raise the failure of one that finished with one."""
    running = []
    for job in jobs:
        if job.done():
            job.result()
        else:
            running.append(job)
    return running


def _locked_headers(client: RegistryClient) -> _Headers:
    return _Headers(client)


class _Headers:
    """``client.auth_headers`` for several fetch threads (one login at a time)."""

    def __init__(self, client: RegistryClient) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, str]:
        with self._lock:
            return self._client.auth_headers()
