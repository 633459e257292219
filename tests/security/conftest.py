"""Security tests: attacks on a real registry over HTTP, on SQLite and on PostgreSQL.

``live`` is a registry served by uvicorn on a migrated database of each backend (the
``database_url`` fixture of ``tests/server``); ``http`` an ``httpx.Client`` on it;
``institution`` / ``researcher`` registered, logged-in identities (real signatures);
``granted`` a researcher with a grant on the institution's published ``acme/books``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ostraca.server.settings import Settings

from ..registry_helpers import Registry
from ..server.conftest import _pg_admin, _sqlite_template, backend, database_url
from ..server.server_helpers import (
    Identity,
    grant_access,
    new_identity,
    publish_dataset,
    request_access,
)
from .security_helpers import serve, storage_root

__all__ = ["_pg_admin", "_sqlite_template", "backend", "database_url"]


@pytest.fixture
def live_settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        storage_url=storage_root(tmp_path),
        max_blob_bytes=8 * 1024 * 1024,
    )


@pytest.fixture
def live(live_settings: Settings) -> Iterator[Registry]:
    with serve(live_settings) as reg:
        yield reg


@pytest.fixture
def http(live: Registry) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        yield client


@pytest.fixture
def institution(http: httpx.Client) -> Identity:
    return new_identity(http, "institution", "Acme Institute")


@pytest.fixture
def researcher(http: httpx.Client) -> Identity:
    return new_identity(http, "researcher", "Ada Researcher")


@pytest.fixture
def granted(http: httpx.Client, institution: Identity, researcher: Identity) -> Identity:
    """``researcher``, holding a grant on ``acme/books`` (published by ``institution``)."""
    publish_dataset(http, institution, "acme/books")
    request_id = request_access(http, researcher, "acme/books")
    grant_access(http, institution, researcher, "acme/books", request=request_id)
    return researcher
