"""Encryption keys of principals and the wrapping of data keys to them (ENCRYPTION.md 3-5).

- :class:`EncryptionPrivateKey` / :class:`EncryptionPublicKey`: a hybrid ML-KEM-768 + X25519
  key pair for HPKE (RFC 9180, KEM ``MLKEM768-X25519``, HKDF-SHA256, AES-256-GCM). It may be
  derived from the principal's Ed25519 identity (:meth:`EncryptionPrivateKey.derive`), so whoever
  holds the identity file can recreate it on a new machine.
- :class:`EncryptionKey`: the signed statement that binds an encryption public key to the
  principal's Ed25519 identity; :func:`verify_encryption_key` checks it (E1-E6).
- :class:`KeyGrant`: the publisher's signed companion of an ``AccessGrant`` (or its own escrow,
  ``grant`` null) carrying data keys wrapped to one recipient key; :func:`verify_key_grant`
  checks it (W1-W8) and :func:`open_key_grant` unwraps its keys.

Pure: bytes in, bytes out; ``now`` is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import Field, StringConstraints, model_validator

from .canonical import canonical_bytes
from .crypto import DataKey, GroupContext
from .envelope import Envelope
from .errors import MalformedError, MissingKeyError, WrongKeyError, WrongRecipientError
from .keys import SigningKey, VerifyKey
from .models import (
    TIMESTAMP_FORMAT,
    DatasetName,
    GroupName,
    Hex256,
    PositiveInt,
    Statement,
    Timestamp,
    _Model,
)
from .verify import Verified, _names_signer, _not_from_future, _open

KEM_NAME = "MLKEM768-X25519"
SUITE_NAME = "MLKEM768-X25519/HKDF-SHA256/AES-256-GCM"
SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
MLKEM_PUBLIC_BYTES = 1184
X25519_BYTES = 32
PUBLIC_BYTES = MLKEM_PUBLIC_BYTES + X25519_BYTES
"""An encryption public key: ML-KEM-768 encapsulation key (FIPS 203) || X25519 public key."""
SECRET_BYTES = 64 + X25519_BYTES
"""An encryption private key: ML-KEM-768 seed ``d || z`` (64 bytes) || X25519 private key."""
WRAPPED_BYTES = hpke.KEM.MLKEM768_X25519.enc_length() + 32 + 16
"""HPKE single-shot output for one data key: ``enc`` (1120) || AES-256-GCM(data key) (48)."""
DERIVE_LABEL = b"ostraca-encryption-key-v1\n"
WRAP_LABEL = b"ostraca-key-wrap-v1\x00"
MAX_WRAPPED_KEYS = 100_000
KEY_GRANT_LOG_TYPE = "application/vnd.ostraca.log.key-grant+json"
"""The ``payloadType`` of a key grant's transparency-log entry (LOG.md 1.7)."""


@dataclass(frozen=True, slots=True)
class EncryptionPublicKey:
    """A hybrid public key; its id is the hex sha256 of the 1216 raw bytes."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != PUBLIC_BYTES:
            raise MalformedError(f"encryption public key must be {PUBLIC_BYTES} bytes")

    @property
    def keyid(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def b64(self) -> str:
        return base64.b64encode(self.raw).decode("ascii")

    @classmethod
    def from_b64(cls, text: str) -> EncryptionPublicKey:
        try:
            return cls(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise MalformedError(f"encryption public key is not base64: {exc}") from exc

    def to_hpke(self) -> hpke.MLKEM768X25519PublicKey:
        try:
            return hpke.MLKEM768X25519PublicKey(
                mlkem.MLKEM768PublicKey.from_public_bytes(self.raw[:MLKEM_PUBLIC_BYTES]),
                x25519.X25519PublicKey.from_public_bytes(self.raw[MLKEM_PUBLIC_BYTES:]),
            )
        except ValueError as exc:
            raise MalformedError(f"not a usable {KEM_NAME} public key: {exc}") from exc


class EncryptionPrivateKey:
    """A hybrid private key. Never serialized except through :attr:`secret`."""

    __slots__ = ("_key", "_secret", "public")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != SECRET_BYTES:
            raise MalformedError(f"encryption private key must be {SECRET_BYTES} bytes")
        kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(secret[:64])
        dh = x25519.X25519PrivateKey.from_private_bytes(secret[64:])
        self._secret = secret
        self._key = hpke.MLKEM768X25519PrivateKey(kem, dh)
        self.public = EncryptionPublicKey(
            kem.public_key().public_bytes_raw() + dh.public_key().public_bytes_raw()
        )

    def __repr__(self) -> str:
        return f"EncryptionPrivateKey({self.public.keyid[:16]}…)"

    @property
    def secret(self) -> bytes:
        """The 96 bytes that recreate this key (for the client's key file)."""
        return self._secret

    @classmethod
    def generate(cls) -> EncryptionPrivateKey:
        kem = mlkem.MLKEM768PrivateKey.generate()
        return cls(kem.private_bytes_raw() + x25519.X25519PrivateKey.generate().private_bytes_raw())

    @staticmethod
    def derivation_message(epoch: int = 0) -> bytes:
        """What the identity signs to derive encryption key number ``epoch``."""
        if not 0 <= epoch <= 2**32 - 1:
            raise MalformedError("epoch must be in 0..2^32-1")
        return DERIVE_LABEL + str(epoch).encode("ascii")

    @classmethod
    def derive(cls, identity: SigningKey, epoch: int = 0) -> EncryptionPrivateKey:
        """The key derived from the identity: ``HKDF-SHA256(ikm = Ed25519 signature over
        derivation_message(epoch), salt = empty, info = "ostraca-encryption-key-v1", L = 96)``.

        Ed25519 signatures are deterministic (RFC 8032), so the same identity gives the same key
        on any machine; nothing else ever signs a message with this prefix."""
        return cls.from_signature(identity.sign(cls.derivation_message(epoch)))

    @classmethod
    def from_signature(cls, signature: bytes) -> EncryptionPrivateKey:
        """:meth:`derive` from the signature alone (a browser signs with WebCrypto)."""
        if len(signature) != 64:
            raise MalformedError("an Ed25519 signature is 64 bytes")
        hkdf = HKDF(hashes.SHA256(), SECRET_BYTES, salt=None, info=DERIVE_LABEL.rstrip(b"\n"))
        return cls(hkdf.derive(signature))

    def to_hpke(self) -> hpke.MLKEM768X25519PrivateKey:
        return self._key


def wrap_info(context: GroupContext, *, grantee: str, recipient: str) -> bytes:
    """HPKE ``info`` of one wrapped key:
    ``"ostraca-key-wrap-v1" 0x00 || context || grantee (32 raw bytes) || recipient key id (32)``."""
    try:
        ids = bytes.fromhex(grantee) + bytes.fromhex(recipient)
    except ValueError as exc:
        raise MalformedError("grantee and recipient must be hex key ids") from exc
    if len(ids) != 64:
        raise MalformedError("grantee and recipient must be 32-byte key ids")
    return WRAP_LABEL + context.encode() + ids


def wrap_data_key(
    key: DataKey, *, recipient: EncryptionPublicKey, context: GroupContext, grantee: str
) -> bytes:
    """HPKE base-mode single-shot seal of ``key`` to ``recipient`` (randomized: a fresh
    encapsulation each call)."""
    info = wrap_info(context, grantee=grantee, recipient=recipient.keyid)
    return SUITE.encrypt(key.raw, recipient.to_hpke(), info=info)


def unwrap_data_key(
    wrapped: bytes, *, private: EncryptionPrivateKey, context: GroupContext, grantee: str
) -> DataKey:
    """Open a wrapped data key; :class:`WrongKeyError` when it was not sealed to this key for
    this context and grantee."""
    if len(wrapped) != WRAPPED_BYTES:
        raise MalformedError(f"a wrapped key is {WRAPPED_BYTES} bytes, got {len(wrapped)}")
    info = wrap_info(context, grantee=grantee, recipient=private.public.keyid)
    try:
        return DataKey(SUITE.decrypt(wrapped, private.to_hpke(), info=info))
    except InvalidTag as exc:
        raise WrongKeyError(
            f"{context.dataset} version {context.version} group {context.group!r}: the wrapped "
            "key does not open with this encryption key for this grantee"
        ) from exc


def _b64_of(value: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not base64") from exc
    if len(raw) != size:
        raise ValueError(f"{what} must be {size} bytes")
    return raw


class EncryptionKey(Statement):
    """Binds an encryption public key to the principal whose Ed25519 key signs it."""

    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.ostraca.encryption-key+json"

    owner: Hex256
    """The Ed25519 key id of the principal (the signer)."""
    kem: Literal["MLKEM768-X25519"] = "MLKEM768-X25519"
    public: Annotated[str, StringConstraints(min_length=1624, max_length=1624)]
    """Base64 of the 1216-byte public key."""
    keyid: Hex256
    created: Timestamp

    @model_validator(mode="after")
    def _keyid_matches(self) -> Self:
        raw = _b64_of(self.public, PUBLIC_BYTES, "public")
        if hashlib.sha256(raw).hexdigest() != self.keyid:
            raise ValueError("keyid is not the sha256 of the encryption public key")
        return self

    def to_public_key(self) -> EncryptionPublicKey:
        return EncryptionPublicKey.from_b64(self.public)


class WrappedKey(_Model):
    version: PositiveInt
    group: GroupName
    key_commitment: Hex256
    wrapped: Annotated[str, StringConstraints(min_length=1560, max_length=1560)]
    """Base64 of the 1168-byte HPKE output."""

    @model_validator(mode="after")
    def _size(self) -> Self:
        _b64_of(self.wrapped, WRAPPED_BYTES, "wrapped")
        return self


class KeyGrant(Statement):
    """Data keys wrapped to one recipient key, signed by the dataset's publisher."""

    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.ostraca.key-grant+json"

    dataset: DatasetName
    publisher: Hex256
    grantee: Hex256
    """The Ed25519 key id of the principal the keys are for (the publisher itself for escrow)."""
    recipient: Hex256
    """The :class:`EncryptionKey` id the keys are wrapped to."""
    grant: Hex256 | None
    """The ``AccessGrant`` id these keys serve; ``null``: the publisher's own escrow."""
    suite: Literal["MLKEM768-X25519/HKDF-SHA256/AES-256-GCM"] = (
        "MLKEM768-X25519/HKDF-SHA256/AES-256-GCM"
    )
    keys: Annotated[list[WrappedKey], Field(min_length=1, max_length=MAX_WRAPPED_KEYS)]
    created: Timestamp

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if len({(k.version, k.group) for k in self.keys}) != len(self.keys):
            raise ValueError("a (version, group) is wrapped twice")
        if (self.grant is None) != (self.grantee == self.publisher):
            raise ValueError("grant is null exactly when the grantee is the publisher (escrow)")
        return self


def verify_encryption_key(
    envelope: Envelope, *, owner_keys: Mapping[str, VerifyKey], now: datetime
) -> Verified[EncryptionKey]:
    """ENCRYPTION.md 3.2: an encryption key signed by one of the principal's keys."""
    v = _open(envelope, EncryptionKey, owner_keys)  # E1-E4
    # E5: it names the key that signed it as its owner.
    _names_signer(
        v.signer, v.statement.owner, "encryption key names an owner other than its signer"
    )
    # E6: not created in the verifier's future.
    _not_from_future(v.statement.created, now, "encryption key")
    return v


def verify_key_grant(
    envelope: Envelope,
    *,
    publisher_keys: Mapping[str, VerifyKey],
    now: datetime,
    grantee: str | None = None,
    recipient: str | None = None,
) -> Verified[KeyGrant]:
    """ENCRYPTION.md 4.3: a key grant signed by the dataset's publisher (W1-W8)."""
    v = _open(envelope, KeyGrant, publisher_keys)  # W1-W4
    g = v.statement
    # W5: it names the key that signed it as its publisher.
    _names_signer(v.signer, g.publisher, "key grant names a publisher other than its signer")
    # W6: not created in the verifier's future.
    _not_from_future(g.created, now, "key grant")
    # W7: it is for this grantee.
    if grantee is not None and g.grantee != grantee:
        raise WrongRecipientError(
            f"key grant is for grantee {g.grantee[:16]}…, not {grantee[:16]}…"
        )
    # W8: it is wrapped to this encryption key.
    if recipient is not None and g.recipient != recipient:
        raise WrongRecipientError(
            f"key grant is wrapped to encryption key {g.recipient[:16]}…, not {recipient[:16]}…"
        )
    return v


def make_key_grant(
    keys: Mapping[int, Mapping[str, DataKey]],
    *,
    dataset: str,
    publisher: str,
    grantee: str,
    recipient: EncryptionPublicKey,
    grant: str | None,
    created: datetime,
) -> KeyGrant:
    """Wrap ``keys[version][group]`` to ``recipient`` for ``grantee`` (unsigned: sign it with
    ``sign_statement``)."""
    wrapped = []
    for version, groups in sorted(keys.items()):
        for group, key in sorted(groups.items()):
            context = GroupContext(dataset=dataset, version=version, group=group)
            blob = wrap_data_key(key, recipient=recipient, context=context, grantee=grantee)
            wrapped.append(
                WrappedKey(
                    version=version,
                    group=group,
                    key_commitment=key.commitment(context),
                    wrapped=base64.b64encode(blob).decode("ascii"),
                )
            )
    return KeyGrant(
        dataset=dataset,
        publisher=publisher,
        grantee=grantee,
        recipient=recipient.keyid,
        grant=grant,
        keys=wrapped,
        created=created,
    )


def open_key_grant(
    grant: KeyGrant, *, private: EncryptionPrivateKey
) -> dict[tuple[int, str], DataKey]:
    """Every data key of ``grant`` by ``(version, group)``, each checked against its commitment."""
    if grant.recipient != private.public.keyid:
        raise WrongRecipientError(
            f"key grant is wrapped to encryption key {grant.recipient[:16]}…, "
            f"not to {private.public.keyid[:16]}…"
        )
    out: dict[tuple[int, str], DataKey] = {}
    for item in grant.keys:
        context = GroupContext(dataset=grant.dataset, version=item.version, group=item.group)
        key = unwrap_data_key(
            base64.b64decode(item.wrapped), private=private, context=context, grantee=grant.grantee
        )
        key.check(item.key_commitment, context)
        out[item.version, item.group] = key
    return out


def data_key_for(
    keys: Mapping[tuple[int, str], DataKey], context: GroupContext, *, commitment: str
) -> DataKey:
    """The data key of an encrypted group, checked against the manifest's ``commitment``;
    :class:`MissingKeyError` when no grant carried it."""
    key = keys.get((context.version, context.group))
    if key is None:
        raise MissingKeyError(
            f"{context.dataset} version {context.version} group {context.group!r} is encrypted "
            "and no key grant carries its data key",
            hint="ask the publisher to approve again (the grant has no keys for this group)",
        )
    key.check(commitment, context)
    return key


def key_grant_log_record(
    key_grant_id: str,
    dataset: str,
    grantee: str,
    grant: str | None,
    recipient: str,
    created: datetime,
) -> bytes:
    """A key grant's transparency-log entry (LOG.md 1.7): its id, the SHA-256 of its payload,
    commits to every field, the wrapped keys included; the fields a monitor reads are beside
    it, and the wrapped keys stay off the public log. The registry builds it from the stored
    row, a client from the envelope it verified (:func:`key_grant_log_entry`): the same bytes.
    A naive ``created`` is taken as UTC (as a database may return it)."""
    when = created if created.tzinfo is None else created.astimezone(UTC)
    return canonical_bytes(
        {
            "payloadType": KEY_GRANT_LOG_TYPE,
            "key_grant": key_grant_id,
            "dataset": dataset,
            "grantee": grantee,
            "grant": grant,
            "recipient": recipient,
            "created": when.strftime(TIMESTAMP_FORMAT),
        }
    )


def key_grant_log_entry(envelope: Envelope) -> bytes:
    """:func:`key_grant_log_record` of a key grant envelope (its payload is not re-validated:
    verify the envelope first)."""
    body = json.loads(envelope.payload)
    return key_grant_log_record(
        envelope.digest,
        body["dataset"],
        body["grantee"],
        body["grant"],
        body["recipient"],
        datetime.strptime(body["created"], TIMESTAMP_FORMAT).replace(tzinfo=UTC),
    )
