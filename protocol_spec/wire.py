"""The bodies of the registry's HTTP API (``HTTP_API.md``), as pure pydantic models.

Part of the protocol: the registry builds and validates them, a client parses them. Requests
(``…In``) refuse unknown fields; responses keep them, so that a client reading a newer
registry's answer does not fail on a field it does not know. Timestamps are whole seconds in
``YYYY-MM-DDTHH:MM:SSZ``. Envelopes travel as JSON objects, exactly the stored bytes parsed:
re-verify them (``Envelope.from_dict``) before trusting what they say.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .errors import MalformedError
from .keys import VerifyKey
from .models import NAMESPACE_PATTERN, Hex256, PublicKey, Timestamp

EnvelopeJSON = dict[str, Any]
"""A DSSE envelope as a JSON object (exactly the stored bytes, parsed)."""

NamespaceName = Annotated[str, StringConstraints(pattern=rf"^{NAMESPACE_PATTERN}$")]


class _In(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    """A response body: unknown fields (from a newer registry) are kept, not refused."""

    model_config = ConfigDict(extra="allow", frozen=True)


# --- identity ---------------------------------------------------------------------------------


class RegisterIn(_In):
    public_key: PublicKey
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    kind: Literal["institution", "researcher"]
    affiliation: Annotated[str, StringConstraints(max_length=256)] = ""
    signature: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    """Base64 Ed25519 signature over ``registration_message(...)``."""


KeyStatus = Literal["active", "rotated"]


class KeyOut(_Out):
    """A principal's key: a ``PublicKey`` plus its status (old clients read it as a PublicKey and
    ignore the rest). ``active`` keys sign new statements; a ``rotated`` key handed its
    authority to ``successor`` at ``rotated`` and only verifies what it signed before."""

    keyid: str
    algorithm: Literal["ed25519"] = "ed25519"
    public: str
    status: KeyStatus
    created: Timestamp
    rotated: Timestamp | None = None
    successor: str | None = None

    def to_verify_key(self) -> VerifyKey:
        """The key, checked against the id it is listed under."""
        key = VerifyKey.from_b64(self.public)
        if key.keyid != self.keyid:
            raise MalformedError(f"the registry lists key {self.keyid[:16]}… under another id")
        return key


class PrincipalOut(_Out):
    keyid: str
    """The key the principal registered with: its stable id (also after rotations)."""
    name: str
    kind: Literal["institution", "researcher"]
    affiliation: str
    keys: list[PublicKey]
    """The active keys: the ones it signs new statements and logs in with."""
    rotated_keys: list[KeyOut] = []
    """Keys it rotated away from (most recent first): they verify what they signed before."""
    created: Timestamp


class ChallengeIn(_In):
    keyid: Hex256


class ChallengeOut(_Out):
    nonce: str
    expires: Timestamp


class TokenIn(_In):
    keyid: Hex256
    nonce: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    signature: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class TokenOut(_Out):
    token: str
    expires: Timestamp
    principal: PrincipalOut


class RotationOut(_Out):
    rotation_id: str
    """Id (payload sha256) of the KeyRotation statement."""
    principal: str
    old_key: str
    new_key: PublicKey
    reason: str
    created: Timestamp
    """The statement's own ``created`` time."""
    rotated_at: Timestamp
    """When the registry accepted it."""
    envelope: EnvelopeJSON


class RotationList(_Out):
    principal: str
    active_key: str
    items: list[RotationOut]
    """The chain, oldest first: ``items[0].old_key`` is the key the principal registered with,
    each ``old_key`` is the previous item's ``new_key``, the last ``new_key`` is ``active_key``."""


# --- namespaces and datasets ------------------------------------------------------------------


class NamespaceIn(_In):
    name: NamespaceName


class NamespaceOut(_Out):
    name: str
    owner: str


class NamespaceDetail(NamespaceOut):
    keys: list[KeyOut]
    """The owner's keys: ``active`` ones sign new manifests and grants; ``rotated`` ones verify
    the versions and grants they signed before their rotation."""


class ColumnOut(_Out):
    name: str
    type: str


class DatasetSummary(_Out):
    dataset: str
    namespace: str
    description: str
    license: str
    latest_version: int
    total_rows: int
    total_bytes: int
    publisher: str
    updated: Timestamp


class DatasetList(_Out):
    items: list[DatasetSummary]
    total: int


class VersionOut(_Out):
    version: int
    digest: str
    created: Timestamp
    total_rows: int
    total_bytes: int
    shards: int


class DatasetDetail(DatasetSummary):
    terms: str
    terms_sha256: str
    columns: list[ColumnOut]
    versions: list[VersionOut]


class PublishOut(_Out):
    dataset: str
    version: int
    digest: str


# --- dataset cards and deprecations (SPEC 3.7, 3.8) ----------------------------------------


class CardOut(_Out):
    """A dataset's current card. The fields repeat the signed statement for display; a client
    verifies ``envelope`` and reads the description and README from it."""

    dataset: str
    card_id: Hex256
    sequence: int
    publisher: Hex256
    description: str
    readme: str
    created: Timestamp
    """The statement's own ``created`` time."""
    accepted: Timestamp
    """When the registry accepted it."""
    envelope: EnvelopeJSON


class DeprecationItem(_Out):
    deprecation_id: Hex256
    dataset: str
    version: int
    manifest: Hex256
    publisher: Hex256
    reason: str
    created: Timestamp
    accepted: Timestamp
    envelope: EnvelopeJSON


class DeprecationList(_Out):
    dataset: str
    latest_version: int
    """The newest version (the head of the manifest chain), deprecated or not."""
    current_version: int
    """What ``latest`` resolves to: the newest version not deprecated (the newest version when
    every version is deprecated)."""
    items: list[DeprecationItem]
    """By version."""


# --- uploads and blobs ------------------------------------------------------------------------


class UploadIn(_In):
    namespace: NamespaceName
    """The namespace the blob is uploaded into: only its manifests may list it."""
    size: Annotated[int, Field(ge=0, le=2**53 - 1, strict=True)]


class UploadOut(_Out):
    upload_id: str
    offset: int
    size: int
    expires: Timestamp


class BlobOut(_Out):
    digest: str
    size: int


# --- access -----------------------------------------------------------------------------------


class RequestItem(_Out):
    request_id: str
    dataset: str
    requester: PrincipalOut
    purpose: str
    status: Literal["pending", "granted", "denied"]
    created: Timestamp
    decided: Timestamp | None
    reason: str | None
    grant_id: str | None
    envelope: EnvelopeJSON


class RequestList(_Out):
    items: list[RequestItem]


class DenyIn(_In):
    reason: Annotated[str, StringConstraints(max_length=4096)] = ""


class GrantItem(_Out):
    grant_id: str
    dataset: str
    publisher: str
    grantee: str
    request: str | None
    min_version: int
    max_version: int | None
    columns: list[str] | None
    groups: list[str] | None
    """The column groups covered (``None``: every group)."""
    not_before: Timestamp
    expires: Timestamp
    created: Timestamp
    revoked: bool
    revocation: EnvelopeJSON | None
    envelope: EnvelopeJSON


class GrantList(_Out):
    items: list[GrantItem]
    key_grants: list[KeyGrantItem] | None = None
    """Only when asked for (``key_grants=true``): the caller's key grants of the dataset."""


class RevocationOut(_Out):
    grant_id: str
    revoked_at: Timestamp
    envelope: EnvelopeJSON


class AuditEventOut(_Out):
    id: int
    time: Timestamp
    action: str
    principal: str | None
    dataset: str | None
    version: int | None
    grant_id: str | None
    detail: str


class AuditList(_Out):
    items: list[AuditEventOut]


# --- encryption (ENCRYPTION.md 4.4) ----------------------------------------------------------


class EncryptionKeyItem(_Out):
    keyid: Hex256
    """The encryption key id (sha256 of its public key)."""
    owner: Hex256
    """The Ed25519 key id that signed it."""
    created: Timestamp
    envelope: EnvelopeJSON


class EncryptionKeyList(_Out):
    items: list[EncryptionKeyItem]
    """Oldest first; the newest is the principal's current encryption key."""


class KeyGrantItem(_Out):
    key_grant_id: Hex256
    dataset: str
    grantee: Hex256
    grant_id: Hex256 | None
    """``null``: the publisher's own escrow."""
    recipient: Hex256
    created: Timestamp
    envelope: EnvelopeJSON


class KeyGrantList(_Out):
    items: list[KeyGrantItem]


# --- operations -------------------------------------------------------------------------------


class Health(_Out):
    status: Literal["ok", "degraded"]
    database: str
    storage: str


class Problem(BaseModel):
    """RFC 9457 problem details, with Ostraca's stable ``code`` and an optional ``hint``."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    hint: str | None = None
