"""Shard encryption (ENCRYPTION.md): AES-256-GCM chunk by chunk under a data key per version and
column group. Pure: bytes in, bytes out.

A plaintext shard is cut into pieces of ``chunk_bytes - 16`` bytes (the last may be shorter; an
empty shard is one empty piece). Piece ``c`` of shard ``s`` is sealed as
``AES-256-GCM(data_key, nonce(s, c), piece, aad(context, s, c, final))`` = ciphertext || 16-byte
tag, and the sealed pieces are concatenated. Every sealed piece but the last is therefore exactly
``chunk_bytes`` long, so the manifest's chunk list (SPEC 2.5, taken over the ciphertext blob)
has one digest per sealed piece: a reader checks a chunk's sha256 and then opens that same
chunk, one pass, before any row decoded from it is used.

Errors (each a :class:`~.errors.VerificationError`, so callers that stop on verification failures
stop on these too)::

    VerificationError
    └── DecryptionError         decryption_failed  a chunk does not open: tampered, reordered,
        │                                          moved between shards/versions/groups, truncated
        ├── WrongKeyError       wrong_key          the data key does not match the manifest's
        │                                          commitment, or a wrapped key does not open
        ├── WrongRecipientError wrong_recipient    a wrapped key meant for another grantee or key
        └── MissingKeyError     missing_key        an encrypted group without a data key
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .chunks import chunk_count
from .errors import (
    DecryptionError,
    MalformedError,
    WrongKeyError,
)

SCHEME = "aes-256-gcm-chunked-v1"
"""The manifest's name for this encryption of a group's shards (``"none"``: plaintext)."""
DATA_KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_SHARD_INDEX = 2**32 - 1
MAX_CHUNK_INDEX = 2**64 - 1
AAD_LABEL = b"ostraca-chunk-v1\x00"
COMMITMENT_LABEL = b"ostraca-data-key-commitment-v1\x00"


def _short(name: str, what: str) -> bytes:
    raw = name.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise MalformedError(f"{what} is longer than 65535 bytes")
    return struct.pack(">H", len(raw)) + raw


@dataclass(frozen=True, slots=True)
class GroupContext:
    """What a data key belongs to: one column group of one version of one dataset."""

    dataset: str
    version: int
    group: str

    def encode(self) -> bytes:
        """``u16 len || dataset || u64 version || u16 len || group`` (big-endian, UTF-8)."""
        if not 1 <= self.version <= 2**53 - 1:
            raise MalformedError(f"version {self.version} is out of range")
        return (
            _short(self.dataset, "dataset")
            + struct.pack(">Q", self.version)
            + _short(self.group, "group")
        )


def chunk_nonce(shard: int, chunk: int) -> bytes:
    """The 96-bit GCM nonce of chunk ``chunk`` of shard ``shard``: ``u32 shard || u64 chunk``.

    Unique per key: a data key seals exactly one (version, group) and every (shard, chunk) pair
    of it exactly once, and the map from the pair to the nonce is injective.
    """
    if not 0 <= shard <= MAX_SHARD_INDEX:
        raise MalformedError(f"shard index {shard} is out of range")
    if not 0 <= chunk <= MAX_CHUNK_INDEX:
        raise MalformedError(f"chunk index {chunk} is out of range")
    return struct.pack(">IQ", shard, chunk)


def chunk_aad(context: GroupContext, shard: int, chunk: int, *, final: bool) -> bytes:
    """The associated data of one chunk:
    ``"ostraca-chunk-v1" 0x00 || context || u32 shard || u64 chunk || u8 final``."""
    return _aad(AAD_LABEL + context.encode(), chunk_nonce(shard, chunk), final)


def _aad(prefix: bytes, nonce: bytes, final: bool) -> bytes:
    return prefix + nonce + (b"\x01" if final else b"\x00")


def plaintext_piece_bytes(chunk_bytes: int) -> int:
    """Plaintext bytes sealed into one full ``chunk_bytes`` ciphertext chunk."""
    if chunk_bytes <= TAG_BYTES:
        raise MalformedError(f"chunk_bytes {chunk_bytes} leaves no room for a {TAG_BYTES}-byte tag")
    return chunk_bytes - TAG_BYTES


def ciphertext_size(plaintext_size: int, chunk_bytes: int) -> int:
    """Length of the sealed shard of a ``plaintext_size``-byte shard."""
    return plaintext_size + TAG_BYTES * chunk_count(
        plaintext_size, plaintext_piece_bytes(chunk_bytes)
    )


def plaintext_size(size: int, chunk_bytes: int) -> int:
    """Length of the plaintext in a sealed shard of ``size`` bytes; refuses a length no
    plaintext seals to (a last chunk of a tag alone is only valid as an empty shard's one
    chunk)."""
    count = chunk_count(size, chunk_bytes)
    plain = size - TAG_BYTES * count
    if plain < 0 or ciphertext_size(plain, chunk_bytes) != size:
        raise DecryptionError(f"{size} bytes is not the length of a sealed shard")
    return plain


@dataclass(frozen=True, slots=True, repr=False)
class DataKey:
    """A 256-bit AES key for one :class:`GroupContext`. Never logged (no ``repr`` of the bytes)."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != DATA_KEY_BYTES:
            raise MalformedError(f"a data key is {DATA_KEY_BYTES} bytes, got {len(self.raw)}")

    def __repr__(self) -> str:
        return "DataKey(…)"

    @classmethod
    def generate(cls) -> DataKey:
        """A fresh key from the OS's CSPRNG (one per version and group, never reused)."""
        return cls(os.urandom(DATA_KEY_BYTES))

    def commitment(self, context: GroupContext) -> str:
        """Hex ``HMAC-SHA256(key, "ostraca-data-key-commitment-v1" 0x00 || context)``: recorded
        in the manifest, it lets a reader tell a wrong key from tampered data before any chunk,
        and commits the ciphertext to one key (GCM alone does not)."""
        return hmac.new(self.raw, COMMITMENT_LABEL + context.encode(), hashlib.sha256).hexdigest()

    def check(self, commitment: str, context: GroupContext) -> None:
        """Raise :class:`WrongKeyError` unless this is the key ``commitment`` names."""
        if not hmac.compare_digest(self.commitment(context), commitment):
            raise WrongKeyError(
                f"{context.dataset} version {context.version} group {context.group!r}: "
                "the data key does not match the manifest's key commitment"
            )


class ShardCipher:
    """Seals and opens the chunks of one shard of one :class:`GroupContext`."""

    __slots__ = ("_aad_prefix", "_aead", "chunk_bytes", "context", "shard")

    def __init__(
        self, key: DataKey, *, context: GroupContext, shard: int, chunk_bytes: int
    ) -> None:
        plaintext_piece_bytes(chunk_bytes)
        chunk_nonce(shard, 0)
        self._aead = AESGCM(key.raw)
        self._aad_prefix = AAD_LABEL + context.encode()
        self.context = context
        self.shard = shard
        self.chunk_bytes = chunk_bytes

    def _nonce_aad(self, chunk: int, final: bool) -> tuple[bytes, bytes]:
        """:func:`chunk_nonce` and :func:`chunk_aad` of ``chunk``, the context encoded once."""
        nonce = chunk_nonce(self.shard, chunk)
        return nonce, _aad(self._aad_prefix, nonce, final)

    def _where(self, chunk: int) -> str:
        c = self.context
        return f"{c.dataset} version {c.version} group {c.group!r} shard {self.shard} chunk {chunk}"

    def seal_chunk(self, chunk: int, piece: bytes | memoryview, *, final: bool) -> bytes:
        """One sealed chunk: ciphertext || tag of ``piece``."""
        nonce, aad = self._nonce_aad(chunk, final)
        return self._aead.encrypt(nonce, piece, aad)

    def seal_chunk_into(
        self, chunk: int, piece: bytes | memoryview, out: memoryview, *, final: bool
    ) -> int:
        """:meth:`seal_chunk` into ``out`` (exactly ``len(piece) + 16`` bytes): a writer that
        reuses one buffer spares an allocation, and its page faults, per chunk."""
        nonce, aad = self._nonce_aad(chunk, final)
        return self._aead.encrypt_into(nonce, piece, aad, out)

    def open_chunk_into(
        self, chunk: int, sealed: bytes | memoryview, out: memoryview, *, final: bool
    ) -> int:
        """Open one sealed chunk into ``out``, exactly ``len(sealed) - 16`` bytes; returns that
        length. If the tag does not verify, ``out`` is zeroed (GCM writes the unauthenticated
        plaintext before it checks the tag) and :class:`DecryptionError` is raised."""
        if len(sealed) < TAG_BYTES:
            raise DecryptionError(f"{self._where(chunk)}: shorter than a tag")
        if len(out) != len(sealed) - TAG_BYTES:
            raise MalformedError(
                f"{self._where(chunk)}: output is not {len(sealed) - TAG_BYTES} bytes"
            )
        nonce, aad = self._nonce_aad(chunk, final)
        try:
            return self._aead.decrypt_into(nonce, sealed, aad, out)
        except InvalidTag as exc:
            out[:] = bytes(len(out))
            raise DecryptionError(
                f"{self._where(chunk)} does not open: tampered, reordered, moved from another "
                "shard, version or group, or truncated"
            ) from exc

    def open_chunk(self, chunk: int, sealed: bytes | memoryview, *, final: bool) -> bytes:
        """The plaintext of one sealed chunk."""
        out = bytearray(max(0, len(sealed) - TAG_BYTES))
        self.open_chunk_into(chunk, sealed, memoryview(out), final=final)
        return bytes(out)

    def seal_chunks(self, plaintext: bytes | memoryview) -> Iterator[bytes]:
        """The sealed chunks of a whole plaintext shard, in order."""
        view = memoryview(plaintext)
        piece = plaintext_piece_bytes(self.chunk_bytes)
        count = chunk_count(len(view), piece)
        for c in range(count):
            yield self.seal_chunk(c, view[c * piece : (c + 1) * piece], final=c == count - 1)

    def seal(self, plaintext: bytes | memoryview) -> bytes:
        """The sealed shard (what is uploaded and named by its sha256)."""
        return b"".join(self.seal_chunks(plaintext))

    def open(self, sealed: bytes | memoryview) -> bytes:
        """The plaintext of a whole sealed shard; any chunk that does not open raises."""
        return bytes(self.open_into(sealed))

    def open_into(self, sealed: bytes | memoryview) -> bytearray:
        """:meth:`open`, into a fresh buffer (no copy of the plaintext after it)."""
        view = memoryview(sealed)
        out = bytearray(plaintext_size(len(view), self.chunk_bytes))
        count = chunk_count(len(view), self.chunk_bytes)
        piece = plaintext_piece_bytes(self.chunk_bytes)
        target = memoryview(out)
        for c in range(count):
            part = view[c * self.chunk_bytes : (c + 1) * self.chunk_bytes]
            start = c * piece
            self.open_chunk_into(
                c, part, target[start : start + len(part) - TAG_BYTES], final=c == count - 1
            )
        return out
