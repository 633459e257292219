"""The registry's configuration: one pydantic-settings class, read from ``OSTRACA_*`` variables.

Zero configuration works: a SQLite file and a blob folder under ``data_dir``. Unsafe values
(a token that lives for a month, an envelope cap above the protocol's own) are refused at
start-up with a message that says what to change.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ostraca.protocol_spec.envelope import MAX_ENVELOPE_BYTES

GIB = 1024**3
MIB = 1024**2
_S3_URL = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^?#]*)?$")


class Settings(BaseSettings):
    """Registry settings. Every field can be set as ``OSTRACA_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="OSTRACA_", extra="ignore")

    data_dir: Path = Path("./ostraca-data")
    database_url: str = Field(
        default="", description="SQLAlchemy URL; default sqlite:///<data_dir>/registry.db"
    )
    storage_url: str = Field(
        default="",
        description="Blob store: file:///ABSOLUTE/PATH or s3://BUCKET[/PREFIX]; default "
        "file://<data_dir>/blobs",
    )
    s3_endpoint_url: str = Field(
        default="", description="S3 API endpoint (MinIO, Ceph, ...); default: AWS for the region"
    )
    s3_region: str = Field(default="", description="S3 region; default from the AWS settings")
    s3_access_key_id: str = Field(
        default="", description="S3 credentials; default: boto3's chain (AWS_* variables, ...)"
    )
    s3_secret_access_key: SecretStr = SecretStr("")
    blob_delivery: Literal["stream", "presign", "accel"] = Field(
        default="stream",
        description="Who sends the bytes of an authorized blob read: the registry (stream), "
        "the S3 store through a pre-signed URL (presign), nginx (accel, X-Accel-Redirect)",
    )
    presign_ttl_seconds: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="Lifetime of a pre-signed URL: a revocation takes effect within it",
    )
    accel_location: str = Field(
        default="/_ostraca_blobs",
        pattern=r"^(/[A-Za-z0-9_.-]+)+$",
        description="nginx's internal location serving <storage>/sha256/ (blob_delivery=accel)",
    )
    token_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    nonce_ttl_seconds: int = Field(default=300, ge=10, le=3600)
    upload_ttl_seconds: int = Field(default=86400, ge=60, le=30 * 24 * 3600)
    max_blob_bytes: int = Field(default=4 * GIB, ge=1, le=1024 * GIB)
    max_envelope_bytes: int = Field(
        default=512 * MIB,
        ge=64 * 1024,
        le=MAX_ENVELOPE_BYTES,
        description="Body cap of a manifest envelope (checked while the body is read)",
    )
    max_statement_bytes: int = Field(
        default=64 * 1024,
        ge=4 * 1024,
        le=MIB,
        description="Body cap of every other JSON body: logins, requests, grants, rotations, ...",
    )
    max_manifest_shards: int = Field(default=200_000, ge=1, le=10_000_000)
    max_open_upload_bytes: int = Field(
        default=64 * GIB,
        ge=1,
        description="Upload quota: bytes one principal may hold in open upload sessions",
    )
    upload_idle_seconds: int = Field(
        default=3600,
        ge=60,
        description="An upload session untouched this long expires (OSTRACA_UPLOAD_TTL_SECONDS "
        "bounds its whole life)",
    )

    @model_validator(mode="after")
    def _defaults_and_safety(self) -> Self:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'registry.db').as_posix()}"
        if not self.storage_url:
            self.storage_url = f"file://{(self.data_dir / 'blobs').resolve().as_posix()}"
        scheme = self.database_url.partition(":")[0]
        if scheme not in {"sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg"}:
            raise ValueError(
                f"OSTRACA_DATABASE_URL scheme {scheme!r} is not supported: use sqlite:///PATH or "
                "postgresql+psycopg://USER:PASSWORD@HOST/DB"
            )
        if self.database_url.startswith("sqlite") and ":memory:" in self.database_url:
            raise ValueError(
                "OSTRACA_DATABASE_URL must not be an in-memory SQLite database: every worker "
                "and connection would see a different, empty registry"
            )
        self._check_storage()
        if self.max_open_upload_bytes < self.max_blob_bytes:
            raise ValueError(
                "OSTRACA_MAX_OPEN_UPLOAD_BYTES must be at least OSTRACA_MAX_BLOB_BYTES, or the "
                "largest blob allowed could never be uploaded"
            )
        if self.upload_idle_seconds > self.upload_ttl_seconds:
            raise ValueError(
                "OSTRACA_UPLOAD_IDLE_SECONDS must not exceed OSTRACA_UPLOAD_TTL_SECONDS"
            )
        if self.nonce_ttl_seconds > self.token_ttl_seconds:
            raise ValueError("OSTRACA_NONCE_TTL_SECONDS must not exceed OSTRACA_TOKEN_TTL_SECONDS")
        return self

    def _check_storage(self) -> None:
        on_s3 = self.storage_url.startswith("s3://")
        if on_s3 and not _S3_URL.match(self.storage_url):
            raise ValueError(
                "OSTRACA_STORAGE_URL must be s3://BUCKET[/PREFIX] (a valid bucket name)"
            )
        if not on_s3 and not self.storage_url.startswith("file://"):
            raise ValueError(
                "OSTRACA_STORAGE_URL must be file:///ABSOLUTE/PATH or s3://BUCKET[/PREFIX]"
            )
        if not on_s3 and not Path(self.storage_url.removeprefix("file://")).is_absolute():
            raise ValueError("OSTRACA_STORAGE_URL must name an absolute path (file:///...)")
        if self.blob_delivery == "presign" and not on_s3:
            raise ValueError("OSTRACA_BLOB_DELIVERY=presign needs an s3:// OSTRACA_STORAGE_URL")
        if self.blob_delivery == "accel" and on_s3:
            raise ValueError("OSTRACA_BLOB_DELIVERY=accel needs a file:// OSTRACA_STORAGE_URL")

    @property
    def storage_path(self) -> Path:
        return Path(self.storage_url.removeprefix("file://"))

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with the driver made explicit (``postgresql`` → ``postgresql+psycopg``)."""
        return normalize_url(self.database_url)


def normalize_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url
