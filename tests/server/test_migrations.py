from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from ostraca.protocol_spec.errors import UnavailableError
from ostraca.server.app import create_app
from ostraca.server.migrate import (
    alembic_config,
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
    "namespace_blobs",
    "upload_sessions",
    "login_nonces",
    "auth_tokens",
    "access_requests",
    "grants",
    "revocations",
    "audit_events",
    "log_head",
    "log_entries",
    "log_nodes",
    "log_checkpoints",
    "encryption_keys",
    "key_grants",
    "dataset_cards",
    "deprecations",
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
        Settings(data_dir=tmp_path, storage_url="ftp://bucket")
    with pytest.raises(ValueError, match="OSTRACA_STORAGE_URL"):
        Settings(data_dir=tmp_path, storage_url="s3://Not_A_Bucket")
    defaults = Settings(data_dir=tmp_path)
    assert defaults.database_url == f"sqlite:///{tmp_path}/registry.db"
    assert defaults.storage_url == f"file://{tmp_path.resolve()}/blobs"
    assert defaults.max_blob_bytes == 4 * 1024**3


_ROWS_0002 = [
    "INSERT INTO principals (id, keyid, name, kind, affiliation, created) VALUES "
    f"(1, '{'a' * 64}', 'Acme', 'institution', '', :t), "
    f"(2, '{'b' * 64}', 'Globex', 'institution', '', :t)",
    "INSERT INTO namespaces (id, name, owner_id, created) VALUES (1, 'acme', 1, :t)",
    "INSERT INTO datasets (id, name, namespace_id, latest_version, description, license, terms, "
    "terms_sha256, columns, total_rows, total_bytes, publisher, created, updated) VALUES "
    f"(1, 'acme/books', 1, 1, '', 'MIT', 't', '{'c' * 64}', '[]', 1, 1, '{'a' * 64}', :t, :t)",
    "INSERT INTO versions (id, dataset_id, version, digest, envelope, created, published, "
    f"total_rows, total_bytes, shards) VALUES (1, 1, 1, '{'d' * 64}', :e, :t, :t, 1, 1, 1)",
    f"INSERT INTO blobs (digest, size, created) VALUES ('{'1' * 64}', 1, :t), "
    f"('{'2' * 64}', 32, :t), ('{'3' * 64}', 5, :t)",
    "INSERT INTO version_blobs (version_id, digest, kind, size) VALUES "
    f"(1, '{'1' * 64}', 'shard', 1), (1, '{'2' * 64}', 'chunks', 32)",
    'INSERT INTO upload_sessions (id, principal_id, size, "offset", created, expires) VALUES '
    f"('{'e' * 32}', 1, 9, 0, :t, :t), ('{'f' * 32}', 2, 9, 0, :t, :t)",
]


def test_migration_0003_backfills_links_and_downgrades(empty_database_url: str) -> None:
    """Blobs that published versions list are linked into their dataset's namespace (an
    unlisted finished upload has no recorded uploader: unlinked); an open session goes to its
    principal's namespace, one of a principal without a namespace is dropped. Down to 0002:
    the links and the session column go, the blobs stay."""
    url = empty_database_url
    config = alembic_config(url)
    command.upgrade(config, "0002")
    engine = create_engine(url)
    values = {"t": datetime(2026, 11, 30, tzinfo=UTC), "e": b"{}"}
    try:
        with engine.begin() as conn:
            for statement in _ROWS_0002:
                conn.execute(text(statement), values)
        command.upgrade(config, "0003")
        with engine.connect() as conn:
            links = set(conn.execute(text("SELECT namespace_id, digest FROM namespace_blobs")))
            sessions = set(conn.execute(text("SELECT id, namespace_id FROM upload_sessions")))
        assert links == {(1, "1" * 64), (1, "2" * 64)}
        assert sessions == {("e" * 32, 1)}
        command.downgrade(config, "0002")
        assert "namespace_blobs" not in inspect(engine).get_table_names()
        columns = {c["name"] for c in inspect(engine).get_columns("upload_sessions")}
        assert "namespace_id" not in columns
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM blobs")).scalar_one() == 3
    finally:
        engine.dispose()
    upgrade_to_head(url)
    assert check_drift(url) is None


def test_migration_0005_downgrade_refuses_group_limited_grants(empty_database_url: str) -> None:
    """Down from 0005 the registry would serve every column group under a grant naming some:
    refused while one is unrevoked; otherwise the named groups' blobs are unlisted."""
    url = empty_database_url
    config = alembic_config(url)
    upgrade_to_head(url)
    engine = create_engine(url)
    values = {"t": datetime(2026, 11, 30, tzinfo=UTC), "e": b"{}"}
    grant = (
        "INSERT INTO grants (grant_id, dataset_id, publisher, publisher_id, grantee, grantee_id, "
        "min_version, columns, groups, not_before, expires, created, envelope) VALUES "
        f"('{'9' * 64}', 1, '{'a' * 64}', 1, '{'b' * 64}', 2, 1, NULL, :g, :t, :t, :t, :e)"
    )
    try:
        with engine.begin() as conn:
            for statement in _ROWS_0002[:6]:
                conn.execute(text(statement), values)
            conn.execute(text("UPDATE version_blobs SET \"group\" = 'pii' WHERE kind = 'chunks'"))
            conn.execute(text(grant), {**values, "g": '["default"]'})
        with pytest.raises(RuntimeError, match="column groups"):
            command.downgrade(config, "0004")
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM grants"))
        command.downgrade(config, "0004")
        assert "groups" not in {c["name"] for c in inspect(engine).get_columns("grants")}
        with engine.connect() as conn:
            kinds = list(conn.execute(text("SELECT kind FROM version_blobs")).scalars())
        assert kinds == ["shard"]
    finally:
        engine.dispose()
    upgrade_to_head(url)
    assert check_drift(url) is None
