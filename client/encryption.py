"""The client's side of end-to-end encryption (protocol_spec/ENCRYPTION.md).

- Writing: :class:`SealingSink` sits between Arrow's IPC writer and the shard file's
  :class:`~.shards.HashingSink`, sealing every ``chunk_bytes - 16`` plaintext bytes into one
  ``chunk_bytes`` sealed chunk, so the shard's sha256 and chunk list are over the ciphertext.
- Reading: while a shard downloads, a :class:`ChunkOpener` opens each chunk on the fetch thread
  the moment its digest matched (``ChunkVerifier(on_verified=...)``), before any reader is woken
  for it, so AES-GCM overlaps the download and the decoding; nothing is yielded from a chunk that
  does not open. A stored copy (cache, pulled copy) goes through :func:`opened`, which opens each
  chunk as it is read.
- Keys: :func:`identity_encryption_key` derives a principal's encryption key from its identity,
  :func:`encryption_key_envelope` signs the statement that registers it, :class:`KeyRing`
  collects the data keys of verified key grants, :func:`key_grant_envelope` wraps them.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import sys
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ostraca.protocol_spec import (
    AccessGrant,
    Envelope,
    ScopeError,
    SigningKey,
    VerifyKey,
    check_grant_version,
    sign_statement,
)
from ostraca.protocol_spec.chunks import chunk_count
from ostraca.protocol_spec.crypto import (
    TAG_BYTES,
    DataKey,
    GroupContext,
    ShardCipher,
    plaintext_piece_bytes,
    plaintext_size,
)
from ostraca.protocol_spec.enckeys import (
    EncryptionKey,
    EncryptionPrivateKey,
    EncryptionPublicKey,
    data_key_for,
    make_key_grant,
    open_key_grant,
    verify_key_grant,
)
from ostraca.protocol_spec.errors import DecryptionError
from ostraca.protocol_spec.wire import GrantItem

__all__ = [
    "ChunkOpener",
    "KeyRing",
    "OpeningReader",
    "SealingSink",
    "by_version",
    "covers",
    "encryption_key_envelope",
    "identity_encryption_key",
    "key_grant_envelope",
    "opened",
]


class SealingSink:
    """A write-only file for ``pa.PythonFile``: seals plaintext chunk by chunk into ``inner``.

    A full piece is sealed only once a byte after it arrives, so the last piece (full or not)
    is the one :meth:`finish` seals as final. ``tell`` and ``size`` count plaintext bytes (what
    Arrow wrote); ``sealed`` counts what reached ``inner``.
    """

    def __init__(self, inner: Any, cipher: ShardCipher) -> None:
        self._inner = inner
        self._cipher = cipher
        self._piece = plaintext_piece_bytes(cipher.chunk_bytes)
        scratch = SEALING_POOL.take(self._piece + cipher.chunk_bytes)
        self._buffer, self._out = scratch[: self._piece], scratch[self._piece :]
        self._fill = 0
        self._index = 0
        self.size = 0
        self.sealed = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        pos, n = 0, len(view)
        while pos < n:
            if self._fill == self._piece:  # full, and more follows: not the last piece
                self._emit(self._buffer, final=False)
                self._fill = 0
            if self._fill == 0 and n - pos > self._piece:  # a whole piece and more: no copy
                self._emit(view[pos : pos + self._piece], final=False)
                pos += self._piece
                continue
            take = min(n - pos, self._piece - self._fill)
            self._buffer[self._fill : self._fill + take] = view[pos : pos + take]
            self._fill += take
            pos += take
        self.size += n
        return n

    def _emit(self, piece: memoryview, *, final: bool) -> None:
        sealed = self._out[: len(piece) + TAG_BYTES]
        self._cipher.seal_chunk_into(self._index, piece, sealed, final=final)
        self._inner.write(sealed)  # written (and hashed) before the buffer is reused
        self._index += 1
        self.sealed += len(sealed)

    def finish(self) -> None:
        """Seal the last piece (call once, after the Arrow writer closed)."""
        self._emit(self._buffer[: self._fill], final=True)
        self._fill = 0

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._inner.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


class PlaintextPool:
    """Shard-sized plaintext buffers, reused once nothing references them any more.

    Record batches decoded from a buffer are zero-copy views of it, so it may be reused only
    when the last of them is gone: a buffer cannot change its size while a view of it exists,
    which :meth:`take` uses as its probe. Fresh memory costs page faults (and zeroing): ~0.5
    CPU-s/GB on this VM, several times that for memory the host took back (free page
    reporting). So a stream that drops its batches reuses its buffers; one that keeps them
    (``to_table``) gets fresh ones. At most ``keep`` idle buffers stay allocated. On Linux a
    buffer is a private anonymous mapping asking for transparent huge pages (one fault per
    2 MiB, no second zeroing pass): a fresh 64 MiB buffer has every page in place after 9 ms
    here, against 41–53 ms for a ``bytearray`` (memory the host took back costs ~170–195 ms
    either way).
    """

    def __init__(self, keep: int = 2) -> None:
        self._keep = keep
        self._buffers: list[bytearray | mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> memoryview:
        """A writable view of ``size`` bytes no one else uses: the smallest idle buffer that
        holds it (first fit would let a small shard's thread take the buffer a larger one needs
        when a stream's shards are opened at once, and that one would then fault in fresh
        memory), else a new one."""
        with self._lock:
            fits = [b for b in self._buffers if len(b) >= size and not _exported(b)]
            if fits:
                return memoryview(min(fits, key=len))[:size]
            buf = _allocate(size)
            if len(self._buffers) >= self._keep:
                idle = [b for b in self._buffers if not _exported(b)]
                if idle:
                    self._buffers.remove(min(idle, key=len))
            if len(self._buffers) < self._keep:
                self._buffers.append(buf)
            return memoryview(buf)


def _allocate(size: int) -> bytearray | mmap.mmap:
    if sys.platform != "linux" or size == 0:  # resizing an anonymous mapping needs mremap
        return bytearray(size)
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with contextlib.suppress(OSError):  # a kernel built without transparent huge pages
        buf.madvise(mmap.MADV_HUGEPAGE)
    return buf


def _exported(buf: bytearray | mmap.mmap) -> bool:
    """Whether a view of ``buf`` exists (a buffer with views cannot change its size)."""
    try:
        if isinstance(buf, mmap.mmap):
            buf.resize(len(buf))
        else:
            buf.append(0)
            buf.pop()
    except BufferError:
        return True
    return False


PLAINTEXT_POOL = PlaintextPool(keep=4)
SEALING_POOL = PlaintextPool(keep=4)
"""A :class:`SealingSink`'s piece and output buffers, reused shard after shard."""


class ChunkOpener:
    """Opens the chunks of one sealed shard of ``size`` bytes into one plaintext buffer for the
    whole shard, taken from :data:`PLAINTEXT_POOL` (record batches decoded from it are zero-copy
    views of it: a batch straddling two chunks is never joined, no buffer is allocated per
    chunk)."""

    def __init__(self, *, size: int, cipher: ShardCipher) -> None:
        self.cipher = cipher
        self.size = size
        self.count = chunk_count(size, cipher.chunk_bytes)
        self._piece = plaintext_piece_bytes(cipher.chunk_bytes)
        self.plain = PLAINTEXT_POOL.take(plaintext_size(size, cipher.chunk_bytes))

    def open_chunk(self, index: int, sealed: bytes | memoryview) -> None:
        """Open chunk ``index`` (its sealed bytes) into its place in :attr:`plain`."""
        start = index * self._piece
        self.cipher.open_chunk_into(
            index,
            sealed,
            self.plain[start : start + len(sealed) - TAG_BYTES],
            final=index == self.count - 1,
        )

    def open_verified(self, sealed: memoryview, start: int, end: int) -> None:
        """Open the chunks of sealed bytes ``[start, end)`` of ``sealed`` (the whole shard, as
        mapped), which just verified: a :class:`~.fetch.ChunkVerifier`'s ``on_verified``, so
        each chunk is opened on the thread that receives and hashes it, while it is still in
        the CPU's cache, and before a reader waiting for it is woken."""
        step = self.cipher.chunk_bytes
        for index in range(start // step, -(-end // step)):
            self.open_chunk(index, sealed[index * step : min(self.size, (index + 1) * step)])

    def sealed_end(self, plain_end: int) -> int:
        """How much of the sealed shard holds plaintext ``[0, plain_end)``: the end of the
        chunk its last byte lies in."""
        return min(self.size, -(-plain_end // self._piece) * self.cipher.chunk_bytes)


class OpeningReader(io.RawIOBase):
    """The plaintext of a sealed shard read from ``sealed`` (verified bytes: a memoryview, or a
    reader that hands out only verified bytes), opened one chunk at a time as it is read, by a
    :class:`ChunkOpener`: reads are zero-copy slices of its plaintext buffer."""

    def __init__(self, sealed: memoryview | Any, *, size: int, cipher: ShardCipher) -> None:
        super().__init__()
        self._sealed = sealed
        self._opener = ChunkOpener(size=size, cipher=cipher)
        self._next = 0
        self._opened = 0
        self._pos = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def _sealed_chunk(self, start: int, want: int) -> bytes | memoryview:
        if isinstance(self._sealed, memoryview):
            return self._sealed[start : start + want]
        parts: list[bytes | memoryview] = []
        got = 0
        while got < want:
            part = self._sealed.read(want - got)
            if not part:
                raise DecryptionError(f"sealed shard ended in chunk {self._next}")
            parts.append(part)
            got += len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _open_next(self) -> None:
        step = self._opener.cipher.chunk_bytes
        start = self._next * step
        sealed = self._sealed_chunk(start, min(step, self._opener.size - start))
        self._opener.open_chunk(self._next, sealed)
        self._next += 1
        self._opened += len(sealed) - TAG_BYTES

    def read(self, size: int = -1) -> memoryview:
        """Up to ``size`` plaintext bytes (all: ``-1``), a view into the opened plaintext."""
        plain = self._opener.plain
        end = len(plain) if size < 0 else min(len(plain), self._pos + size)
        while self._opened < end:
            self._open_next()
        out = plain[self._pos : end]
        self._pos = end
        return out


def opened(sealed: memoryview | io.RawIOBase, *, size: int, cipher: ShardCipher) -> io.RawIOBase:
    """The plaintext source of a verified sealed shard, for :func:`~.verified.decode_shard`."""
    return OpeningReader(sealed, size=size, cipher=cipher)


def identity_encryption_key(identity: SigningKey, epoch: int = 0) -> EncryptionPrivateKey:
    """The principal's encryption key derived from its identity (ENCRYPTION.md 3.3)."""
    return EncryptionPrivateKey.derive(identity, epoch)


def encryption_key_envelope(
    identity: SigningKey, private: EncryptionPrivateKey, *, created: datetime
) -> Envelope:
    """The signed :class:`EncryptionKey` that registers ``private``'s public key."""
    statement = EncryptionKey(
        owner=identity.keyid,
        public=private.public.b64,
        keyid=private.public.keyid,
        created=created,
    )
    return sign_statement(statement, [identity])


def key_grant_envelope(
    publisher: SigningKey,
    keys: Mapping[int, Mapping[str, DataKey]],
    *,
    dataset: str,
    grantee: str,
    recipient: EncryptionPublicKey,
    grant: str | None,
    created: datetime,
) -> Envelope:
    """A signed :class:`KeyGrant` of ``keys[version][group]`` for ``grantee`` (``grant`` None:
    the publisher's own escrow, ``grantee`` then being the publisher)."""
    statement = make_key_grant(
        keys,
        dataset=dataset,
        publisher=publisher.keyid,
        grantee=grantee,
        recipient=recipient,
        grant=grant,
        created=created,
    )
    return sign_statement(statement, [publisher])


def covers(grant: AccessGrant | GrantItem, version: int, group: str) -> bool:
    """Whether ``grant`` covers ``group`` of ``version`` (G8, and its groups: W9)."""
    try:
        check_grant_version(grant, version)
    except ScopeError:
        return False
    return grant.groups is None or group in grant.groups


class KeyRing:
    """The data keys a principal could open, by ``(version, group)``, from verified key grants."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self._keys: dict[tuple[int, str], DataKey] = {}
        self.envelopes: list[Envelope] = []
        """The key grants keys were taken from (a pulled copy keeps them)."""

    def add(
        self,
        envelopes: Iterable[Envelope],
        *,
        publisher_keys: Mapping[str, VerifyKey],
        grantee: str,
        privates: Mapping[str, EncryptionPrivateKey],
        grants: Mapping[str | None, AccessGrant | None],
        now: datetime,
    ) -> None:
        """Open every key grant for ``grantee`` whose ``grant`` is in ``grants`` (the verified
        grants by id; ``None: None`` admits the publisher's escrow) and whose recipient is one
        of ``privates`` (by encryption key id), keeping only keys of the versions and groups its
        grant covers (W9). Other key grants are skipped: a principal may see several of its own."""
        for env in envelopes:
            kg = verify_key_grant(env, publisher_keys=publisher_keys, now=now).statement
            private = privates.get(kg.recipient)
            mine = kg.grantee == grantee and kg.dataset == self.dataset
            if not mine or kg.grant not in grants or private is None:
                continue
            terms = grants[kg.grant]
            taken = {
                vg: key
                for vg, key in open_key_grant(kg, private=private).items()
                if terms is None or covers(terms, *vg)
            }
            if taken:
                self._keys.update(taken)
                self.envelopes.append(env)

    def cipher(
        self, *, version: int, group: str, commitment: str, shard: int, chunk_bytes: int
    ) -> ShardCipher:
        """The cipher of one shard of an encrypted group (``missing_key``/``wrong_key``)."""
        context = GroupContext(dataset=self.dataset, version=version, group=group)
        key = data_key_for(self._keys, context, commitment=commitment)
        return ShardCipher(key, context=context, shard=shard, chunk_bytes=chunk_bytes)

    def keys(self) -> dict[int, dict[str, DataKey]]:
        """Every key by version then group (to wrap them again for a grantee)."""
        return by_version(self._keys)


def by_version(keys: Mapping[tuple[int, str], DataKey]) -> dict[int, dict[str, DataKey]]:
    """``{(version, group): key}`` as ``{version: {group: key}}``."""
    out: dict[int, dict[str, DataKey]] = {}
    for (version, group), key in keys.items():
        out.setdefault(version, {})[group] = key
    return out
