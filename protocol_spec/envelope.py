"""DSSE envelopes: ``{"payload", "payloadType", "signatures": [{"keyid", "sig"}]}``.

The signature covers DSSE's pre-authentication encoding (PAE) of the payload type and the
payload bytes, so a payload can never be re-interpreted as another statement type.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from .canonical import MAX_PAYLOAD_BYTES, canonical_bytes, parse_strict, sha256_hex
from .errors import MalformedError, PayloadTypeError, SignatureError, UntrustedKeyError
from .keys import SigningKey, VerifyKey

MAX_ENVELOPE_BYTES = MAX_PAYLOAD_BYTES * 4 // 3 + 64 * 1024
MAX_SIGNATURES = 8


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: ``DSSEv1 SP len(type) SP type SP len(body) SP body``."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _b64decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise MalformedError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"{what} is not valid base64: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed DSSE envelope. ``payload`` is the raw signed bytes."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    @property
    def digest(self) -> str:
        """The statement's id: hex sha256 of the payload bytes (not of the envelope)."""
        return sha256_hex(self.payload)

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }

    def to_json(self) -> bytes:
        """Envelope as canonical JSON bytes (what is stored and served byte for byte)."""
        return canonical_bytes(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Any) -> Envelope:
        if not isinstance(obj, dict):
            raise MalformedError("envelope must be a JSON object")
        missing = {"payload", "payloadType", "signatures"} - obj.keys()
        if missing:
            raise MalformedError(f"envelope lacks {', '.join(sorted(missing))}")
        payload_type = obj["payloadType"]
        if not isinstance(payload_type, str) or not payload_type:
            raise MalformedError("envelope payloadType must be a non-empty string")
        payload = _b64decode(obj["payload"], "envelope payload")
        raw_sigs = obj["signatures"]
        if not isinstance(raw_sigs, list) or not raw_sigs:
            raise MalformedError("envelope must carry at least one signature")
        if len(raw_sigs) > MAX_SIGNATURES:
            raise MalformedError(f"envelope carries more than {MAX_SIGNATURES} signatures")
        sigs = []
        for raw in raw_sigs:
            if not isinstance(raw, dict) or not isinstance(raw.get("keyid"), str):
                raise MalformedError("each signature must be an object with a string keyid")
            sigs.append(Signature(keyid=raw["keyid"], sig=_b64decode(raw.get("sig"), "sig")))
        return cls(payload_type=payload_type, payload=payload, signatures=tuple(sigs))

    @classmethod
    def from_json(cls, data: bytes) -> Envelope:
        if len(data) > MAX_ENVELOPE_BYTES:
            raise MalformedError(f"envelope of {len(data)} bytes is too large")
        return cls.from_dict(parse_strict(data))


def sign_envelope(payload_type: str, payload: bytes, keys: list[SigningKey]) -> Envelope:
    """Sign ``payload`` (already canonical bytes) with each key, in order."""
    message = pae(payload_type, payload)
    return Envelope(
        payload_type=payload_type,
        payload=payload,
        signatures=tuple(Signature(keyid=k.keyid, sig=k.sign(message)) for k in keys),
    )


def verify_envelope(
    envelope: Envelope, *, payload_type: str, trusted: dict[str, VerifyKey]
) -> VerifyKey:
    """Check the payload type and return the first trusted key whose signature verifies.

    Signatures by unknown key ids are ignored; a signature by a trusted key id that does not
    verify is an error (it means tampering, not an unknown signer).
    """
    if envelope.payload_type != payload_type:
        raise PayloadTypeError(
            f"expected payloadType {payload_type!r}, got {envelope.payload_type!r}"
        )
    message = pae(envelope.payload_type, envelope.payload)
    for sig in envelope.signatures:
        key = trusted.get(sig.keyid)
        if key is None:
            continue
        key.verify(sig.sig, message)
        return key
    if not trusted:
        raise UntrustedKeyError("no trusted keys were given")
    ids = ", ".join(s.keyid[:16] + "…" for s in envelope.signatures)
    raise UntrustedKeyError(f"no signature by a trusted key (signed by {ids})")


def require_signature(envelope: Envelope, key: VerifyKey) -> None:
    """Raise unless ``envelope`` carries a valid signature by exactly ``key``."""
    message = pae(envelope.payload_type, envelope.payload)
    for sig in envelope.signatures:
        if sig.keyid == key.keyid:
            key.verify(sig.sig, message)
            return
    raise SignatureError(f"no signature by key {key.keyid[:16]}…")
