"""Shared fixtures. Each test gets its own temp directory; servers are real apps.

``registry_server`` / ``registry`` (a real registry: uvicorn on loopback, SQLite, migrated),
``publisher`` / ``researcher`` (:class:`Identity`, each its own ``OSTRACA_HOME`` with a
registered, logged-in key; the publisher owns the namespace ``acme``) and ``publish_table``.
Folders with fixtures of the same names (``tests/server``) use their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ostraca.client.publishing import PublishResult

from .client.client_helpers import NAMESPACE, Identity, make_identity, sample_table
from .registry_helpers import Registry, publish_as, running_registry


@pytest.fixture
def registry_server(tmp_path: Path) -> Iterator[Registry]:
    """A real registry on a free loopback port: its own data dir, SQLite file, migrations."""
    with running_registry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def registry(registry_server: Registry) -> str:
    """Base URL of a fresh registry (``http://127.0.0.1:PORT``)."""
    return registry_server.url


@pytest.fixture
def publisher(tmp_path: Path, registry: str) -> Iterator[Identity]:
    """An institution, registered and logged in, owning the namespace ``acme``."""
    ident = make_identity(tmp_path, registry, "acme-lab", "institution")
    ident.client.create_namespace(NAMESPACE)
    yield ident
    ident.client.close()


@pytest.fixture
def researcher(tmp_path: Path, registry: str) -> Iterator[Identity]:
    """A researcher, registered and logged in."""
    ident = make_identity(tmp_path, registry, "ada", "researcher")
    yield ident
    ident.client.close()


@pytest.fixture
def publish_table(publisher: Identity) -> Callable[..., PublishResult]:
    """``publish_table(table, dataset="acme/books", **publish_kwargs)`` as the publisher."""

    def _publish(
        table: pa.Table | None = None, dataset: str = f"{NAMESPACE}/books", **kwargs: Any
    ) -> PublishResult:
        return publish_as(
            publisher, table if table is not None else sample_table(), dataset=dataset, **kwargs
        )

    return _publish
