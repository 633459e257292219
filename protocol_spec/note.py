"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 and timestamped cosignatures
(c2sp.org/tlog-cosignature, ``cosignature/v1``). LOG.md section 3.

A note is UTF-8 text ending in a newline, a blank line, then signature lines
``— <name> base64(key id || signature)``. A verifier is configured with :class:`NoteVerifier` s
(a name, a key and a signature type, written as a *vkey* ``name+hex(key id)+base64(type || key)``).
:func:`verify_note` follows the spec: signatures from unknown (name, key id) pairs are ignored; one
from a known key that fails refuses the whole note; a note with no verified signature is refused.

Parsing is strict, so one note has one byte form: canonical base64, no control characters, no
empty or unknown lines, at most :data:`MAX_SIGNATURES` signatures and :data:`MAX_NOTE_SIZE` bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import MalformedNoteError, SignatureError, UntrustedKeyError
from .keys import SigningKey, VerifyKey

ED25519 = 0x01
"""Signature type of a plain Ed25519 note signature over the note text."""
COSIGNATURE_V1 = 0x04
"""Signature type of a timestamped Ed25519 ``cosignature/v1`` (8-byte time || signature)."""
SIGNATURE_TYPES = (ED25519, COSIGNATURE_V1)

MAX_NOTE_SIZE = 256 * 1024
"""The largest note parsed: 16 post-quantum signatures fit, as the spec asks."""
MAX_SIGNATURES = 100
MAX_TIMESTAMP = 2**63 - 1
_DASH = "\u2014 "


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedNoteError(f"{what} is not base64: {exc}") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise MalformedNoteError(f"{what} is not canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def check_key_name(name: str) -> None:
    """A key name is non-empty and holds no Unicode space, plus sign or control character."""
    bad = not name or any(
        c == "+" or c.isspace() or unicodedata.category(c) in ("Cc", "Zs", "Zl", "Zp") for c in name
    )
    if bad:
        raise MalformedNoteError(f"not a valid note key name: {name!r}")


def note_key_id(name: str, sig_type: int, raw_public: bytes) -> bytes:
    """``SHA-256(name || 0x0A || type || public key)[:4]`` (signed-note, tlog-cosignature)."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + raw_public).digest()[
        :4
    ]


def cosignature_message(text: str, timestamp: int) -> bytes:
    """The bytes a ``cosignature/v1`` signs: header line, time line, then the whole note text."""
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: the key name, the 4-byte key id and the signature bytes after it."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.key_id) != 4 or not self.signature:
            raise MalformedNoteError("a note signature is a 4-byte key id and a signature")

    def line(self) -> str:
        return f"{_DASH}{self.name} {_b64(self.key_id + self.signature)}\n"

    @classmethod
    def from_line(cls, line: str) -> NoteSignature:
        """Parse one line (without its newline)."""
        if not line.startswith(_DASH):
            raise MalformedNoteError("a note signature line starts with an em dash and a space")
        parts = line[len(_DASH) :].split(" ")
        if len(parts) != 2:
            raise MalformedNoteError("a note signature line is '— <name> <base64>'")
        raw = _b64decode(parts[1], "note signature")
        if len(raw) < 5:
            raise MalformedNoteError("a note signature holds a key id and a signature")
        return cls(name=parts[0], key_id=raw[:4], signature=raw[4:])


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedNoteError("note text must end with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise MalformedNoteError("note text holds a control character")


@dataclass(frozen=True, slots=True)
class Note:
    """A note text and its signature lines, in order (duplicates and unknown keys kept)."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        _check_text(self.text)
        if not self.signatures or len(self.signatures) > MAX_SIGNATURES:
            raise MalformedNoteError(f"a note has 1 to {MAX_SIGNATURES} signatures")

    def to_bytes(self) -> bytes:
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Note:
        """Parse a signed note strictly (MalformedNoteError on anything off-format)."""
        if len(data) > MAX_NOTE_SIZE:
            raise MalformedNoteError(f"note is larger than {MAX_NOTE_SIZE} bytes")
        try:
            whole = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNoteError("note is not UTF-8") from exc
        _check_text(whole)
        split = whole.rfind("\n\n")
        if split < 0:
            raise MalformedNoteError("note has no blank line before its signatures")
        lines = whole[split + 2 :].split("\n")[:-1]
        if len(lines) > MAX_SIGNATURES:
            raise MalformedNoteError(f"note has more than {MAX_SIGNATURES} signatures")
        return cls(
            text=whole[: split + 1], signatures=tuple(NoteSignature.from_line(x) for x in lines)
        )

    def with_signatures(self, *signatures: NoteSignature) -> Note:
        """This note with ``signatures`` appended (e.g. a witness's cosignature)."""
        return Note(text=self.text, signatures=(*self.signatures, *signatures))


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A trusted key: its name, its Ed25519 key, and the signature type it signs with."""

    name: str
    key: VerifyKey
    sig_type: int = ED25519

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if self.sig_type not in SIGNATURE_TYPES:
            raise MalformedNoteError(f"unsupported note signature type {self.sig_type:#04x}")

    @property
    def key_id(self) -> bytes:
        return note_key_id(self.name, self.sig_type, self.key.raw)

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}"

    def to_vkey(self) -> str:
        return f"{self}+{_b64(bytes([self.sig_type]) + self.key.raw)}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``name+hex(key id)+base64(type || key)``; the key id must match the key."""
        parts = vkey.split("+", 2)  # base64 may hold "+" too
        if len(parts) != 3:
            raise MalformedNoteError("a vkey is name+keyid+key")
        name, hex_id, key_b64 = parts
        raw = _b64decode(key_b64, "vkey key")
        if len(raw) != 33:
            raise MalformedNoteError("a vkey key is a type byte and a 32-byte Ed25519 key")
        out = cls(name=name, key=VerifyKey(raw[1:]), sig_type=raw[0])
        if hex_id != out.key_id.hex():
            raise MalformedNoteError(f"vkey key id {hex_id!r} does not match its key")
        return out

    def verify(self, text: str, signature: bytes) -> int | None:
        """Check ``signature`` over ``text``; return its timestamp (cosignatures) or None.
        Raises :class:`SignatureError`."""
        if self.sig_type == ED25519:
            if len(signature) != 64:
                raise SignatureError(f"signature by {self} is not 64 bytes")
            self.key.verify(signature, text.encode("utf-8"))
            return None
        if len(signature) != 72:
            raise SignatureError(f"cosignature by {self} is not 8 + 64 bytes")
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            raise SignatureError(f"cosignature by {self} has a timestamp beyond 2**63 - 1")
        self.key.verify(signature[8:], cosignature_message(text, timestamp))
        return timestamp


@dataclass(frozen=True, slots=True)
class NoteSigner:
    """A signing key under a note key name, of one signature type."""

    name: str
    key: SigningKey
    sig_type: int = ED25519

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(name=self.name, key=self.key.public, sig_type=self.sig_type)

    def sign(self, text: str, *, timestamp: int | None = None) -> NoteSignature:
        """Sign ``text``; a cosignature needs a ``timestamp`` (POSIX seconds), a plain one none."""
        _check_text(text)
        verifier = self.verifier
        if self.sig_type == ED25519:
            if timestamp is not None:
                raise MalformedNoteError("a plain Ed25519 note signature has no timestamp")
            return NoteSignature(
                name=self.name, key_id=verifier.key_id, signature=self.key.sign(text.encode())
            )
        if timestamp is None or not 0 <= timestamp <= MAX_TIMESTAMP:
            raise MalformedNoteError("a cosignature needs a timestamp in [0, 2**63 - 1]")
        sig = self.key.sign(cosignature_message(text, timestamp))
        return NoteSignature(
            name=self.name, key_id=verifier.key_id, signature=timestamp.to_bytes(8, "big") + sig
        )


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    verifier: NoteVerifier
    timestamp: int | None


def verify_note(note: Note, verifiers: Sequence[NoteVerifier]) -> tuple[VerifiedSignature, ...]:
    """The signatures on ``note`` by known ``verifiers``, each verifier once, in note order.

    1. Two different verifiers with the same name and key id are a configuration error.
    2. A signature whose (name, key id) matches no verifier is ignored.
    3. A signature by a known key must verify, or the whole note is refused (SignatureError).
    4. At least one signature must be by a known key (UntrustedKeyError).
    """
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for v in verifiers:
        if known.setdefault((v.name, v.key_id), v) != v:
            raise MalformedNoteError(f"two different verifier keys for {v}")
    seen: dict[NoteVerifier, VerifiedSignature] = {}
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        timestamp = verifier.verify(note.text, sig.signature)
        seen.setdefault(verifier, VerifiedSignature(verifier=verifier, timestamp=timestamp))
    if not seen:
        names = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in note.signatures)
        raise UntrustedKeyError(f"note is signed by no known key (only by {names})")
    return tuple(seen.values())
