"""Shard chunk lists (SPEC.md 2.5): the length rule both sides apply, and the one place the
chunk digest algorithm is chosen.

The registry checks that an uploaded chunk-list blob has :func:`chunk_list_bytes` bytes before
it accepts a manifest naming it (it never hashes chunks: every algorithm's digest is 32 bytes);
a reader checks the length before trusting a chunk list it fetched. A chunk list is the
concatenation of the :data:`DIGEST_BYTES`-byte digests, by the manifest's ``chunk_digest``
algorithm, of each ``chunk_bytes`` piece; the digest *of* the list (``ShardEntry.chunks``) and
blob ids stay SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Literal, Protocol

import blake3

from .errors import MalformedError

DIGEST_BYTES = 32
"""Length of one raw chunk digest in a chunk list (SHA-256, and BLAKE3's default output)."""

ChunkDigest = Literal["sha256", "blake3"]
CHUNK_DIGESTS: tuple[ChunkDigest, ...] = ("sha256", "blake3")
"""The chunk digest algorithms this implementation verifies (``DatasetManifest.chunk_digest``)."""
DEFAULT_CHUNK_DIGEST: ChunkDigest = "sha256"
"""The algorithm of a manifest without ``chunk_digest`` (every manifest before it existed)."""
PUBLISH_CHUNK_DIGEST: ChunkDigest = "blake3"
"""What a new publish uses unless told otherwise: ~4x less CPU per byte than SHA-256 here."""


class ChunkHash(Protocol):
    """The part of a ``hashlib``-style hash object a chunk digest needs."""

    def update(self, data: memoryview | bytes, /) -> object: ...

    def digest(self) -> bytes: ...


def chunk_hasher(name: str) -> Callable[[], ChunkHash]:
    """A constructor of fresh hash objects of chunk digest algorithm ``name``; raises
    :class:`MalformedError` naming an algorithm this implementation does not know."""
    if name == "sha256":
        return hashlib.sha256
    if name == "blake3":
        return blake3.blake3
    raise MalformedError(
        f"chunk digest algorithm {name!r} is not one this client implements "
        f"({', '.join(CHUNK_DIGESTS)})"
    )


def chunk_count(size: int, chunk_bytes: int) -> int:
    """Pieces of a ``size``-byte shard cut every ``chunk_bytes``: ``ceil(size / chunk_bytes)``,
    and one for an empty shard."""
    return max(1, -(-size // chunk_bytes))


def chunk_list_bytes(size: int, chunk_bytes: int) -> int:
    """Length in bytes of the chunk list of a ``size``-byte shard: one digest per piece."""
    return DIGEST_BYTES * chunk_count(size, chunk_bytes)


def compute_chunk_list(data: bytes | memoryview, chunk_bytes: int, name: str) -> bytes:
    """The chunk list of the blob ``data`` (held whole) with chunk digest algorithm ``name``."""
    new = chunk_hasher(name)
    view = memoryview(data)
    out = []
    for start in range(0, max(1, len(view)), chunk_bytes):  # one (empty) piece when empty
        h = new()
        h.update(view[start : start + chunk_bytes])
        out.append(h.digest())
    return b"".join(out)
