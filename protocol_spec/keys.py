"""Ed25519 keys: generation, key ids, PEM (PKCS#8) encoding. Pure: bytes in, bytes out.

Reading and writing key files (with their permission checks) is the client's job.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import MalformedError, SignatureError


def key_id(raw_public: bytes) -> str:
    """Key id: lowercase hex sha256 of the raw 32-byte Ed25519 public key."""
    return hashlib.sha256(raw_public).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """A public key with its id."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise MalformedError(f"Ed25519 public key must be 32 bytes, got {len(self.raw)}")

    @property
    def keyid(self) -> str:
        return key_id(self.raw)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.raw).decode("ascii")

    @classmethod
    def from_b64(cls, text: str) -> VerifyKey:
        try:
            return cls(base64.b64decode(text, validate=True))
        except ValueError as exc:
            raise MalformedError(f"public key is not base64: {exc}") from exc

    def verify(self, signature: bytes, message: bytes) -> None:
        """Raise :class:`SignatureError` unless ``signature`` is valid for ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature as exc:
            raise SignatureError(f"signature by key {self.keyid[:16]}… does not verify") from exc


class SigningKey:
    """An Ed25519 private key. Never serialized except through :meth:`to_pem`."""

    __slots__ = ("_key", "public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public = VerifyKey(raw)

    @property
    def keyid(self) -> str:
        return self.public.keyid

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """Deterministic key from a 32-byte seed (test vectors only)."""
        if len(seed) != 32:
            raise MalformedError("Ed25519 seed must be 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def to_pem(self, passphrase: bytes | None = None) -> bytes:
        """PKCS#8 PEM, encrypted with ``passphrase`` when given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes | None = None) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(data, password=passphrase or None)
        except TypeError as exc:
            raise MalformedError(
                "the key file is encrypted: give its passphrase"
                if passphrase is None
                else "the key file is not encrypted: give no passphrase"
            ) from exc
        except ValueError as exc:
            raise MalformedError(
                f"not a usable PEM private key (or wrong passphrase): {exc}"
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise MalformedError("the PEM key is not an Ed25519 key")
        return cls(key)
