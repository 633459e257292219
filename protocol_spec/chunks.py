"""The length rule of a shard's chunk list (SPEC.md 2.5): pure arithmetic both sides apply.

The registry checks that an uploaded chunk-list blob has this length before it accepts a
manifest naming it; a reader checks it before trusting a chunk list it fetched.
"""

from __future__ import annotations

DIGEST_BYTES = 32
"""Length of one raw SHA-256 digest in a chunk list."""


def chunk_count(size: int, chunk_bytes: int) -> int:
    """Pieces of a ``size``-byte shard cut every ``chunk_bytes``: ``ceil(size / chunk_bytes)``,
    and one for an empty shard."""
    return max(1, -(-size // chunk_bytes))


def chunk_list_bytes(size: int, chunk_bytes: int) -> int:
    """Length in bytes of the chunk list of a ``size``-byte shard: one digest per piece."""
    return DIGEST_BYTES * chunk_count(size, chunk_bytes)
