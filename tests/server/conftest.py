"""Server fixtures: every test runs on SQLite and on PostgreSQL, each with its own database.

SQLite: a migrated template file, copied per test. PostgreSQL: a fresh schema per test
(selected through ``search_path`` in the URL), migrated with Alembic and dropped afterwards.
PostgreSQL comes from ``OSTRACA_TEST_DATABASE_URL`` (``source scripts/postgres.sh``); without
it the PostgreSQL half fails — it is never skipped.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from ostraca.server.app import create_app
from ostraca.server.migrate import upgrade_to_head
from ostraca.server.settings import Settings

from .server_helpers import (
    Built,
    Identity,
    MovableClock,
    grant_access,
    new_identity,
    publish_dataset,
    request_access,
)
from .storage_fixtures import moto_endpoint, open_s3, s3_url  # noqa: F401 - fixtures

BACKENDS = ["sqlite", "postgresql"]
PG_ENV = "OSTRACA_TEST_DATABASE_URL"


def postgres_base_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.fail(
            f"{PG_ENV} is not set: the PostgreSQL half of the server tests cannot run. "
            "Run `source scripts/postgres.sh` (or `make test`) first.",
            pytrace=False,
        )
    return url


@pytest.fixture(scope="session")
def _pg_admin() -> Iterator[Engine]:
    engine = create_engine(postgres_base_url(), isolation_level="AUTOCOMMIT", pool_size=1)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "registry.db"
    upgrade_to_head(f"sqlite:///{path}")
    return path


@contextmanager
def _pg_schema(admin: Engine) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema; the URL selects it through ``search_path``."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{postgres_base_url()}?options=-csearch_path%3D{schema}%20-csynchronous_commit%3Doff"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """A fresh database with no tables (for migration tests)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with _pg_schema(request.getfixturevalue("_pg_admin")) as url:
        yield url


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of the parametrized backend (its own file or schema)."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "registry.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    with _pg_schema(request.getfixturevalue("_pg_admin")) as url:
        upgrade_to_head(url)
        yield url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        storage_url=f"file://{tmp_path / 'blobs'}",
        max_blob_bytes=8 * 1024 * 1024,
    )


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def app(
    settings: Settings, clock: MovableClock, store: str, request: pytest.FixtureRequest
) -> FastAPI:
    """The registry under test, on local files or on a real S3 API server (moto's, over HTTP)."""
    storage = None
    if store == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        storage = open_s3(endpoint, request.getfixturevalue("s3_url"))
    return create_app(settings, clock=clock, storage=storage)


@pytest.fixture
def store(backend: str) -> str:
    """Which blob store the ``app`` fixture uses: the two deployments, SQLite with local files
    (the embedded default) and PostgreSQL with S3 (scale-out), so every registry test runs on
    both databases and both stores. The store contract itself runs on each store in
    ``test_storage_s3.py``."""
    return "local" if backend == "sqlite" else "s3"


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def institution(client: TestClient) -> Identity:
    return new_identity(client, "institution", "Acme Institute")


@pytest.fixture
def researcher(client: TestClient) -> Identity:
    return new_identity(client, "researcher", "Ada Researcher")


@dataclass
class World:
    """A published dataset and one principal in each role of the authorization matrix."""

    owner: Identity
    other_institution: Identity
    granted: Identity
    ungranted: Identity
    dataset: str
    built: Built
    grant_id: str
    request_id: str

    @property
    def shard(self) -> str:
        return self.built.manifest.shards[0].sha256


@pytest.fixture
def world(client: TestClient) -> World:
    owner = new_identity(client, "institution", "Acme Institute")
    other = new_identity(client, "institution", "Globex Labs")
    granted = new_identity(client, "researcher", "Grace Granted")
    ungranted = new_identity(client, "researcher", "Ursula Ungranted")
    built = publish_dataset(client, owner, "acme/books")
    request_id = request_access(client, granted, "acme/books")
    grant_id = grant_access(client, owner, granted, "acme/books", request=request_id)
    return World(
        owner=owner,
        other_institution=other,
        granted=granted,
        ungranted=ungranted,
        dataset="acme/books",
        built=built,
        grant_id=grant_id,
        request_id=request_id,
    )
