"""The registry's tables (SQLAlchemy 2.0 typed ORM) and engine creation.

Signed envelopes (manifests, requests, grants, revocations, key rotations) are stored byte for
byte as received; the other columns beside them are indexes for queries, filled from the
verified statement.
The API never returns these objects: ``schemas.py`` holds the response types.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

HEX = 64
"""Length of a hex sha256 (key ids, statement ids, blob digests are stored without prefix)."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant on every backend (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012 (SQLAlchemy's class attribute)
        datetime: UTCDateTime(),
        int: Integer(),
        bytes: LargeBinary(),
    }


class Principal(Base):
    __tablename__ = "principals"
    __table_args__ = (CheckConstraint("kind IN ('institution', 'researcher')", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    keyid: Mapped[str] = mapped_column(String(HEX), unique=True)
    """The key it registered with: the principal's stable id."""
    name: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(16))
    affiliation: Mapped[str] = mapped_column(String(256))
    created: Mapped[datetime]


class PrincipalKey(Base):
    __tablename__ = "principal_keys"

    keyid: Mapped[str] = mapped_column(String(HEX), primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    public: Mapped[str] = mapped_column(String(44))
    """Base64 of the raw 32-byte Ed25519 public key."""
    created: Mapped[datetime]
    revoked: Mapped[datetime | None]
    rotated: Mapped[datetime | None]
    """When a key rotation handed this key's authority to its successor. A rotated key still
    verifies what it signed before; it signs nothing new and cannot log in."""
    replaces: Mapped[str | None] = mapped_column(
        String(HEX), ForeignKey("principal_keys.keyid"), unique=True
    )
    """The key this one succeeded by rotation (``None`` for the key the principal registered
    with). Unique: a key hands over its authority once, so the chain of keys cannot fork."""
    rotation_id: Mapped[str | None] = mapped_column(String(HEX), unique=True)
    """Id (payload sha256) of the KeyRotation that introduced this key."""
    rotation: Mapped[bytes | None]
    """That KeyRotation envelope, exactly as received (signed by the old and the new key)."""


class Namespace(Base):
    __tablename__ = "namespaces"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    created: Mapped[datetime]


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(160), unique=True)
    """Full ``namespace/name``."""
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id"), index=True)
    latest_version: Mapped[int]
    description: Mapped[str] = mapped_column(Text)
    license: Mapped[str] = mapped_column(String(128))
    terms: Mapped[str] = mapped_column(Text)
    terms_sha256: Mapped[str] = mapped_column(String(HEX))
    columns: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    total_rows: Mapped[int] = mapped_column(BigInteger)
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    publisher: Mapped[str] = mapped_column(String(HEX))
    created: Mapped[datetime]
    updated: Mapped[datetime]


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "version", name="uq_versions_dataset_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    version: Mapped[int]
    digest: Mapped[str] = mapped_column(String(HEX), unique=True)
    """Id of the manifest: sha256 of its payload."""
    envelope: Mapped[bytes]
    """The manifest envelope exactly as the publisher sent it."""
    created: Mapped[datetime]
    """The manifest's own ``created`` time."""
    published: Mapped[datetime]
    total_rows: Mapped[int] = mapped_column(BigInteger)
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    shards: Mapped[int]


class VersionBlob(Base):
    __tablename__ = "version_blobs"
    __table_args__ = (
        CheckConstraint("kind IN ('shard', 'chunks')", name="kind"),
        Index("ix_version_blobs_digest", "digest"),
    )

    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(HEX), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    size: Mapped[int] = mapped_column(BigInteger)
    group: Mapped[str] = mapped_column(String(64), server_default="default")
    """The column group whose columns the blob holds (``default`` without column groups)."""


class Blob(Base):
    __tablename__ = "blobs"

    digest: Mapped[str] = mapped_column(String(HEX), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created: Mapped[datetime]


class NamespaceBlob(Base):
    """A blob uploaded into a namespace by its owner: what the namespace's manifests may list
    and its owner may read back (OCI's repository-scoped blobs). Bytes are stored once
    (``blobs``); access is per namespace."""

    __tablename__ = "namespace_blobs"

    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(HEX), ForeignKey("blobs.digest"), primary_key=True)
    created: Mapped[datetime]


class UploadSession(Base):
    __tablename__ = "upload_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id"))
    """The namespace the finished blob is linked into (its owner is the uploader)."""
    size: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger)
    created: Mapped[datetime]
    expires: Mapped[datetime] = mapped_column(index=True)


class LoginNonce(Base):
    __tablename__ = "login_nonces"

    nonce: Mapped[str] = mapped_column(String(HEX), primary_key=True)
    keyid: Mapped[str] = mapped_column(String(HEX))
    expires: Mapped[datetime] = mapped_column(index=True)


class AuthToken(Base):
    __tablename__ = "auth_tokens"

    token_sha256: Mapped[str] = mapped_column(String(HEX), primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    keyid: Mapped[str] = mapped_column(String(HEX))
    """The key that signed the login challenge."""
    created: Mapped[datetime]
    expires: Mapped[datetime] = mapped_column(index=True)
    revoked: Mapped[datetime | None]


class AccessRequestRow(Base):
    __tablename__ = "access_requests"
    __table_args__ = (CheckConstraint("status IN ('pending', 'granted', 'denied')", name="status"),)

    request_id: Mapped[str] = mapped_column(String(HEX), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    requester_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    purpose: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8))
    created: Mapped[datetime]
    decided: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    grant_id: Mapped[str | None] = mapped_column(String(HEX))
    envelope: Mapped[bytes]


class GrantRow(Base):
    __tablename__ = "grants"

    grant_id: Mapped[str] = mapped_column(String(HEX), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    publisher: Mapped[str] = mapped_column(String(HEX))
    """Key id that signed the grant."""
    publisher_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    grantee: Mapped[str] = mapped_column(String(HEX), index=True)
    """Key id of the grantee."""
    grantee_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    request_id: Mapped[str | None] = mapped_column(String(HEX))
    min_version: Mapped[int]
    max_version: Mapped[int | None]
    columns: Mapped[list[str] | None] = mapped_column(JSON)
    groups: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    """The column groups the grant covers (``None``: every group)."""
    not_before: Mapped[datetime]
    expires: Mapped[datetime]
    created: Mapped[datetime]
    envelope: Mapped[bytes]


class RevocationRow(Base):
    __tablename__ = "revocations"

    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.grant_id"), primary_key=True)
    revocation_id: Mapped[str] = mapped_column(String(HEX), unique=True)
    revoked_at: Mapped[datetime]
    envelope: Mapped[bytes]


class AuditEvent(Base):
    """Append-only: rows are inserted, never updated or deleted."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_dataset_id", "dataset", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    time: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(16))
    principal: Mapped[str | None] = mapped_column(String(HEX))
    dataset: Mapped[str | None] = mapped_column(String(160))
    version: Mapped[int | None]
    grant_id: Mapped[str | None] = mapped_column(String(HEX))
    detail: Mapped[str] = mapped_column(Text)


class EncryptionKeyRow(Base):
    """A principal's signed EncryptionKey (ENCRYPTION.md 3.2), stored as received."""

    __tablename__ = "encryption_keys"

    keyid: Mapped[str] = mapped_column(String(HEX), primary_key=True)
    """The encryption key id (sha256 of the 1216-byte public key)."""
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    owner: Mapped[str] = mapped_column(String(HEX))
    """The Ed25519 key id that signed it."""
    created: Mapped[datetime]
    envelope: Mapped[bytes]


class KeyGrantRow(Base):
    """A publisher's signed KeyGrant (ENCRYPTION.md 4.2): wrapped data keys, never opened here."""

    __tablename__ = "key_grants"

    key_grant_id: Mapped[str] = mapped_column(String(HEX), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    grantee: Mapped[str] = mapped_column(String(HEX))
    grantee_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    grant_id: Mapped[str | None] = mapped_column(ForeignKey("grants.grant_id"), index=True)
    """``None``: the publisher's own escrow."""
    recipient: Mapped[str] = mapped_column(ForeignKey("encryption_keys.keyid"))
    created: Mapped[datetime]
    envelope: Mapped[bytes]


class CardRow(Base):
    """A dataset's signed DatasetCard (SPEC 3.7), stored as received; the highest sequence is
    current."""

    __tablename__ = "dataset_cards"
    __table_args__ = (
        UniqueConstraint("dataset_id", "sequence", name="uq_dataset_cards_dataset_sequence"),
    )

    card_id: Mapped[str] = mapped_column(String(HEX), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    sequence: Mapped[int]
    publisher: Mapped[str] = mapped_column(String(HEX))
    created: Mapped[datetime]
    """The statement's own ``created`` time."""
    accepted: Mapped[datetime]
    envelope: Mapped[bytes]


class DeprecationRow(Base):
    """A signed Deprecation of one version (SPEC 3.8), stored as received; at most one each."""

    __tablename__ = "deprecations"
    __table_args__ = (
        UniqueConstraint("dataset_id", "version", name="uq_deprecations_dataset_version"),
    )

    deprecation_id: Mapped[str] = mapped_column(String(HEX), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    version: Mapped[int]
    publisher: Mapped[str] = mapped_column(String(HEX))
    created: Mapped[datetime]
    accepted: Mapped[datetime]
    envelope: Mapped[bytes]


# --- engines -------------------------------------------------------------------------------


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy (not the driver) open transactions, so "begin" below controls BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # Writers take the write lock up front (BEGIN IMMEDIATE): a deferred transaction that read
    # and then writes fails at once with "database is locked" when another writer committed in
    # between; an immediate one waits for busy_timeout instead.
    mode = "DEFERRED" if conn.get_execution_options().get("ostraca_readonly") else "IMMEDIATE"
    conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for ``url``: SQLite (WAL, foreign keys, busy timeout) or PostgreSQL (psycopg 3)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 10}, pool_size=pool_size
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


class Database:
    """The engine and two session factories: read-write and read-only."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._rw = sessionmaker(engine, expire_on_commit=False)
        self._ro = sessionmaker(
            engine.execution_options(ostraca_readonly=True), expire_on_commit=False
        )

    def session(self) -> Session:
        return self._rw()

    def read_session(self) -> Session:
        return self._ro()

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """A read-write session in a transaction committed on success."""
        with self._rw.begin() as s:
            yield s
