"""The signed statements of the Ostraca protocol (pydantic v2 models).

Each statement is serialized as RFC 8785 canonical JSON and signed inside a DSSE envelope whose
``payloadType`` is the statement's :attr:`Statement.PAYLOAD_TYPE`. Its id is the hex sha256 of
those payload bytes. Unknown fields are kept (``extra="allow"``) so that a newer minor revision's
fields stay under the signature when an older verifier re-serializes; values are validated
strictly (no coercion of ``"5"`` into ``5``). SPEC.md gives every field's meaning.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from .canonical import canonical_bytes, sha256_hex
from .chunks import CHUNK_DIGESTS, DEFAULT_CHUNK_DIGEST, ChunkDigest
from .errors import MalformedError
from .keys import VerifyKey, key_id

SPEC_VERSION: Literal[2] = 2
"""The newest ``spec_version`` this implementation verifies (it also verifies 1)."""
DEFAULT_GROUP = "default"
"""The column group of every column no other group names (SPEC 3.1)."""
MAX_SHARDS = 1_000_000
MAX_COLUMNS = 10_000
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIMESTAMP_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
"""ASCII digits only (a ``\\d`` would also match other scripts' digits), matched in full."""


def utc_now() -> datetime:
    """The current time in UTC, to the whole second (the precision of signed timestamps)."""
    return datetime.now(UTC).replace(microsecond=0)


def _parse_timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() != UTC.utcoffset(None):
            raise ValueError("timestamps must be timezone-aware UTC")
        if value.microsecond:
            raise ValueError("timestamps have whole-second precision (use utc_now())")
        return value.astimezone(UTC)
    if isinstance(value, str) and _TIMESTAMP_RE.fullmatch(value):
        return datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    raise ValueError("timestamp must be a string of the form YYYY-MM-DDTHH:MM:SSZ (UTC)")


Timestamp = Annotated[
    datetime,
    BeforeValidator(_parse_timestamp),
    PlainSerializer(lambda d: d.strftime(TIMESTAMP_FORMAT), return_type=str),
]
"""A UTC instant, serialized as ``YYYY-MM-DDTHH:MM:SSZ``."""

Hex256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
"""Lowercase hex of a sha256 digest (also the form of key ids and statement ids)."""

NAMESPACE_PATTERN = r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?"
DATASET_PATTERN = rf"^{NAMESPACE_PATTERN}/[a-z0-9](?:[a-z0-9._-]{{0,98}}[a-z0-9])?$"


def _no_dot_dot(name: str) -> str:
    if ".." in name:
        raise ValueError("dataset names must not contain '..'")
    return name


DatasetName = Annotated[
    str, StringConstraints(pattern=DATASET_PATTERN), AfterValidator(_no_dot_dot)
]
"""``namespace/name``: lowercase letters, digits and ``-`` (plus ``.`` and ``_`` in the name),
never ``..`` — the same rule as :func:`split_dataset`, in every statement type."""

SPDX_PATTERN = r"^(?:LicenseRef-[A-Za-z0-9.-]{1,64}|[A-Za-z0-9][A-Za-z0-9.+-]{0,63})$"
SpdxId = Annotated[str, StringConstraints(pattern=SPDX_PATTERN)]
"""One SPDX licence identifier such as ``MIT``, ``CC-BY-4.0`` or ``LicenseRef-acme-terms``."""

PositiveInt = Annotated[int, Field(ge=1, le=2**53 - 1)]
NonNegativeInt = Annotated[int, Field(ge=0, le=2**53 - 1)]
ShortText = Annotated[str, StringConstraints(max_length=4096)]


def split_dataset(name: str) -> tuple[str, str]:
    """``"ns/name"`` → ``("ns", "name")``; raises :class:`MalformedError` on a bad name."""
    if not re.fullmatch(DATASET_PATTERN, name) or ".." in name:
        raise MalformedError(
            f"invalid dataset name {name!r}: expected namespace/name "
            "(lowercase letters, digits, '-'; the name may also use '.' and '_')"
        )
    ns, _, rest = name.partition("/")
    return ns, rest


def _exact_int(value: Any) -> Any:
    # ``Literal[1, 2]`` alone also takes ``true`` and ``1.0`` (they compare equal to 1).
    if type(value) is not int:
        raise ValueError("must be the integer 1 or 2")
    return value


def _known_chunk_digest(value: Any) -> Any:
    # Named in the error: a newer publisher's algorithm is refused, never read as SHA-256.
    if not isinstance(value, str) or value not in CHUNK_DIGESTS:
        raise ValueError(
            f"chunk_digest {value!r} is not an algorithm this verifier implements "
            f"({', '.join(CHUNK_DIGESTS)})"
        )
    return value


def _exact_true(value: Any) -> Any:
    # ``Literal[True]`` alone also takes ``1`` and ``1.0``.
    if value is not True:
        raise ValueError("must be the JSON literal true")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)


class Statement(_Model):
    """Base of every signed statement."""

    PAYLOAD_TYPE: ClassVar[str]
    V2_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Fields introduced by spec_version 2: a statement uses 2 exactly when it sets one."""
    MINOR_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Optional fields of a minor revision (section 7): left out of the payload when unset."""

    spec_version: Annotated[Literal[1, 2], BeforeValidator(_exact_int)] = 1

    @model_validator(mode="after")
    def _lowest_version(self) -> Self:
        uses = [f for f in self.V2_FIELDS if getattr(self, f) is not None]
        if uses and self.spec_version != 2:
            raise ValueError(f"{', '.join(uses)} need(s) spec_version 2")
        if not uses and self.spec_version != 1:
            raise ValueError("spec_version 2 is for statements using its fields; this is 1")
        return self

    def to_payload(self) -> bytes:
        """The canonical bytes that are signed. The verifier checks the same form. A version-2
        field left unset is left out, so a version-1 statement is exactly one (section 7)."""
        data = self.model_dump(mode="json")
        for name in (*self.V2_FIELDS, *self.MINOR_FIELDS):
            if data.get(name) is None:
                data.pop(name, None)
        return canonical_bytes(data)

    @property
    def digest(self) -> str:
        """The statement's id: hex sha256 of :meth:`to_payload`."""
        return sha256_hex(self.to_payload())

    @classmethod
    def from_json_obj(cls, obj: dict[str, Any]) -> Self:
        """Validate a parsed payload, turning pydantic's error into :class:`MalformedError`."""
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(payload)"
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise MalformedError(f"invalid {cls.__name__}: {where}: {first['msg']}{more}") from exc


class PublicKey(_Model):
    """An Ed25519 public key as it appears in statements and on the registry."""

    keyid: Hex256
    algorithm: Literal["ed25519"] = "ed25519"
    public: Annotated[str, StringConstraints(min_length=44, max_length=44)]
    """Base64 of the raw 32-byte key."""

    @model_validator(mode="after")
    def _keyid_matches(self) -> Self:
        try:
            raw = base64.b64decode(self.public, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("public key is not base64") from exc
        if len(raw) != 32:
            raise ValueError("public key must be 32 bytes")
        if key_id(raw) != self.keyid:
            raise ValueError("keyid is not the sha256 of the public key")
        return self

    @classmethod
    def from_verify_key(cls, key: VerifyKey) -> PublicKey:
        return cls(keyid=key.keyid, public=key.b64)

    def to_verify_key(self) -> VerifyKey:
        return VerifyKey.from_b64(self.public)


class Column(_Model):
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    """Arrow's text form of the type, e.g. ``large_string`` or ``list<item: int32>``."""


ColumnList = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=256)]],
    Field(min_length=1, max_length=MAX_COLUMNS),
]


GroupName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")]
"""A column group's name: lowercase letters, digits, ``-`` and ``_``, at most 64."""


class ColumnGroup(_Model):
    """Columns stored in blobs of their own, which a grant may cover or not (spec_version 2)."""

    name: GroupName
    columns: ColumnList


class GroupBlob(_Model):
    """One column group's part of a shard: an Arrow IPC stream of the group's columns, with
    the shard's rows in the same record batches."""

    group: GroupName
    sha256: Hex256
    bytes: PositiveInt
    chunks: Hex256


class ShardEntry(_Model):
    """One shard: a content-addressed Arrow IPC stream blob of a dataset version (of the
    ``default`` group's columns when the manifest has column groups)."""

    sha256: Hex256
    bytes: PositiveInt
    rows: PositiveInt
    chunks: Hex256
    """sha256 of the shard's chunk list: the concatenated raw sha256 digests of each
    ``chunk_bytes``-sized piece of the shard (the last piece may be shorter)."""
    groups: Annotated[list[GroupBlob], Field(min_length=1, max_length=64)] | None = None
    """spec_version 2: the blob of each of the manifest's ``column_groups``, in their order."""

    def blobs(self) -> list[GroupBlob]:
        """Every blob of the shard, the ``default`` group's first."""
        own = GroupBlob(
            group=DEFAULT_GROUP, sha256=self.sha256, bytes=self.bytes, chunks=self.chunks
        )
        return [own, *(self.groups or [])]


class GroupEncryption(_Model):
    """How one column group's blobs are sealed (ENCRYPTION.md 5)."""

    scheme: Literal["aes-256-gcm-chunked-v1"] = "aes-256-gcm-chunked-v1"
    key_commitment: Hex256
    """HMAC-SHA256 commitment to the group's data key (ENCRYPTION.md 2.2)."""


class DatasetManifest(Statement):
    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.ostraca.manifest+json"

    dataset: DatasetName
    version: PositiveInt
    previous: Hex256 | None
    """Id (payload sha256) of version ``version - 1``'s manifest; ``null`` for version 1."""
    created: Timestamp
    publisher: Hex256
    license: SpdxId
    terms: Annotated[str, StringConstraints(min_length=1, max_length=65536)]
    description: Annotated[str, StringConstraints(max_length=16384)] = ""
    arrow_schema: Annotated[str, StringConstraints(min_length=1, max_length=1_398_104)]
    """Base64 of the Arrow IPC-serialized schema every shard carries."""
    columns: Annotated[list[Column], Field(min_length=1, max_length=MAX_COLUMNS)]
    chunk_bytes: Annotated[int, Field(ge=65536, le=64 * 1024 * 1024)]
    shards: Annotated[list[ShardEntry], Field(min_length=1, max_length=MAX_SHARDS)]
    total_rows: PositiveInt
    total_bytes: PositiveInt
    column_groups: Annotated[list[ColumnGroup], Field(min_length=1, max_length=64)] | None = None
    """spec_version 2: groups of columns stored in blobs of their own; the columns no group
    names form the ``default`` group (the shards' own blobs)."""
    encryption: (
        Annotated[dict[GroupName, GroupEncryption], Field(min_length=1, max_length=65)] | None
    ) = None
    """spec_version 2: how each encrypted group's blobs are sealed (ENCRYPTION.md 5); a group
    not named is plaintext."""
    chunk_digest: Annotated[ChunkDigest, BeforeValidator(_known_chunk_digest)] | None = None
    """Algorithm of the chunk lists' digests (SPEC 2.5); absent: ``sha256``. Use
    :attr:`chunk_algorithm`."""

    V2_FIELDS: ClassVar[tuple[str, ...]] = ("column_groups", "encryption")
    MINOR_FIELDS: ClassVar[tuple[str, ...]] = ("chunk_digest",)

    @property
    def chunk_algorithm(self) -> ChunkDigest:
        """The chunk digest algorithm of every shard's chunk list (``sha256`` when absent)."""
        return self.chunk_digest or DEFAULT_CHUNK_DIGEST

    @field_validator("chunk_bytes")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError("chunk_bytes must be a power of two")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        split_dataset(self.dataset)
        if (self.version == 1) != (self.previous is None):
            raise ValueError("previous must be null exactly when version is 1")
        if sum(s.rows for s in self.shards) != self.total_rows:
            raise ValueError("total_rows is not the sum of the shards' rows")
        if sum(b.bytes for s in self.shards for b in s.blobs()) != self.total_bytes:
            raise ValueError("total_bytes is not the sum of the shards' bytes")
        digests = [b.sha256 for s in self.shards for b in s.blobs()]
        if len(set(digests)) != len(digests):
            raise ValueError("a shard is listed twice")
        if len({c.name for c in self.columns}) != len(self.columns):
            raise ValueError("column names must be unique")
        self._check_groups()
        return self

    def _check_groups(self) -> None:
        names = [g.name for g in self.column_groups or []]
        if DEFAULT_GROUP in names or len(set(names)) != len(names):
            raise ValueError(f"column group names must be unique and not {DEFAULT_GROUP!r}")
        grouped = [c for g in self.column_groups or [] for c in g.columns]
        if len(set(grouped)) != len(grouped) or not set(grouped) < {c.name for c in self.columns}:
            raise ValueError(
                "column groups must name distinct columns of the manifest, leaving at least "
                "one for the default group"
            )
        for i, shard in enumerate(self.shards):
            if [b.group for b in shard.groups or []] != names:
                raise ValueError(f"shard {i} must list one blob per column group, in order")
        if set(self.encryption or {}) - {DEFAULT_GROUP, *names}:
            raise ValueError("encryption names a column group the manifest does not have")

    def groups_for(self, columns: Collection[str]) -> list[str]:
        """The column groups whose columns are exactly ``columns``, in manifest order; raises
        :class:`MalformedError` naming the groups when ``columns`` are not whole groups (the
        registry serves whole groups, so only those can limit a grant)."""
        groups = self.group_columns()
        chosen = [g for g, cols in groups.items() if set(cols) <= set(columns)]
        if {c for g in chosen for c in groups[g]} != set(columns):
            listing = "; ".join(f"{g}: {', '.join(cols)}" for g, cols in groups.items())
            raise MalformedError(
                f"columns {', '.join(sorted(columns))} are not whole column groups of "
                f"{self.dataset} version {self.version} (groups: {listing})"
            )
        return chosen

    def group_columns(self) -> dict[str, list[str]]:
        """Each group's columns in the manifest's column order, ``default`` first."""
        named = {g.name: set(g.columns) for g in self.column_groups or []}
        taken = set().union(*named.values()) if named else set()
        order = [c.name for c in self.columns]
        out = {DEFAULT_GROUP: [c for c in order if c not in taken]}
        out.update({n: [c for c in order if c in cols] for n, cols in named.items()})
        return out

    @property
    def terms_sha256(self) -> str:
        return hashlib.sha256(self.terms.encode("utf-8")).hexdigest()

    @property
    def namespace(self) -> str:
        return self.dataset.partition("/")[0]


class AccessRequest(Statement):
    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.ostraca.access-request+json"

    dataset: DatasetName
    requester: Hex256
    purpose: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    terms_sha256: Hex256
    """sha256 of the UTF-8 terms text the requester accepted."""
    accept_terms: Annotated[Literal[True], BeforeValidator(_exact_true)]
    created: Timestamp
    nonce: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


class AccessGrant(Statement):
    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.ostraca.access-grant+json"

    dataset: DatasetName
    publisher: Hex256
    grantee: Hex256
    request: Hex256 | None = None
    min_version: PositiveInt = 1
    max_version: PositiveInt | None = None
    """``null``: every version, including future ones."""
    columns: ColumnList | None = None
    """``null``: every column."""
    groups: Annotated[list[GroupName], Field(min_length=1, max_length=65)] | None = None
    """spec_version 2: the column groups covered (``null``: every group). The registry serves
    a group's blobs only under a grant covering it."""
    not_before: Timestamp
    expires: Timestamp
    created: Timestamp

    V2_FIELDS: ClassVar[tuple[str, ...]] = ("groups",)

    @model_validator(mode="after")
    def _windows(self) -> Self:
        if self.max_version is not None and self.max_version < self.min_version:
            raise ValueError("max_version is below min_version")
        if self.expires <= self.not_before:
            raise ValueError("expires must be after not_before")
        if self.columns is not None and len(set(self.columns)) != len(self.columns):
            raise ValueError("columns must be unique")
        if self.groups is not None and len(set(self.groups)) != len(self.groups):
            raise ValueError("groups must be unique")
        return self


class Revocation(Statement):
    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.ostraca.revocation+json"

    dataset: DatasetName
    publisher: Hex256
    grant: Hex256
    reason: ShortText = ""
    created: Timestamp


class KeyRotation(Statement):
    """Hands a principal's authority from ``old_key`` to ``new_key``; signed by both."""

    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.ostraca.key-rotation+json"

    old_key: Hex256
    new_key: PublicKey
    reason: ShortText = ""
    created: Timestamp

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if self.new_key.keyid == self.old_key:
            raise ValueError("new_key must differ from old_key")
        return self


class ConsumedDataset(_Model):
    dataset: DatasetName
    version: PositiveInt
    manifest: Hex256
    license: SpdxId
    terms_sha256: Hex256
    grants: Annotated[list[Hex256], Field(min_length=1, max_length=1024)]
    shards_consumed: NonNegativeInt


class TrainingAttestation(Statement):
    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.ostraca.training-attestation+json"

    trainer: Hex256
    checkpoint_sha256: Hex256
    created: Timestamp
    steps: NonNegativeInt
    tokens: NonNegativeInt
    architecture: Annotated[dict[str, int | str | bool], Field(max_length=256)] = Field(
        default_factory=dict
    )
    datasets: Annotated[list[ConsumedDataset], Field(min_length=1, max_length=1024)]


STATEMENT_TYPES: tuple[type[Statement], ...] = (
    DatasetManifest,
    AccessRequest,
    AccessGrant,
    Revocation,
    KeyRotation,
    TrainingAttestation,
)
