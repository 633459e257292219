from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from ostraca.protocol_spec.errors import UnavailableError
from ostraca.server.app import create_app
from ostraca.server.migrate import (
    check_drift,
    current_revision,
    downgrade_to_base,
    head_revision,
    upgrade_to_head,
)
from ostraca.server.settings import Settings

TABLES = {
    "principals",
    "principal_keys",
    "namespaces",
    "datasets",
    "versions",
    "version_blobs",
    "blobs",
    "upload_sessions",
    "login_nonces",
    "auth_tokens",
    "access_requests",
    "grants",
    "revocations",
    "audit_events",
}


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_without_drift(empty_database_url: str) -> None:
    url = empty_database_url
    assert current_revision(url) is None
    upgrade_to_head(url)
    assert current_revision(url) == head_revision()
    assert _tables(url) == TABLES
    assert check_drift(url) is None
    downgrade_to_base(url)
    assert current_revision(url) is None
    assert _tables(url) == set()
    upgrade_to_head(url)
    assert current_revision(url) == head_revision()
    assert check_drift(url) is None


def test_app_refuses_a_database_behind_head(empty_database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=empty_database_url)
    with pytest.raises(UnavailableError) as info:
        create_app(settings)
    assert "ostraca server migrate" in str(info.value)
    upgrade_to_head(empty_database_url)
    assert create_app(settings).title == "Ostraca registry"


def test_settings_refuse_unsafe_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="token_ttl_seconds"):
        Settings(data_dir=tmp_path, token_ttl_seconds=30 * 24 * 3600)
    with pytest.raises(ValueError, match="in-memory"):
        Settings(data_dir=tmp_path, database_url="sqlite:///:memory:")
    with pytest.raises(ValueError, match="OSTRACA_DATABASE_URL scheme"):
        Settings(data_dir=tmp_path, database_url="mysql://x/y")
    with pytest.raises(ValueError, match="OSTRACA_STORAGE_URL"):
        Settings(data_dir=tmp_path, storage_url="s3://bucket")
    defaults = Settings(data_dir=tmp_path)
    assert defaults.database_url == f"sqlite:///{tmp_path}/registry.db"
    assert defaults.storage_url == f"file://{tmp_path.resolve()}/blobs"
    assert defaults.max_blob_bytes == 4 * 1024**3
