"""Client fixtures: a real registry (uvicorn on loopback, SQLite, migrated) and two identities.

Reused by the streaming tests: ``registry`` (base URL), ``publisher`` / ``researcher``
(:class:`Identity`, each its own ``OSTRACA_HOME`` with a registered, logged-in key; the publisher
owns the namespace ``acme``), ``make_table`` and ``publish_table``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import uvicorn

from ostraca.client.publish import PublishResult, publish
from ostraca.server.app import create_app
from ostraca.server.migrate import upgrade_to_head
from ostraca.server.settings import Settings

from .client_helpers import NAMESPACE, TERMS, Identity, make_identity, sample_table


@dataclass
class Registry:
    url: str
    data_dir: Path
    settings: Settings


class _ServerThread(threading.Thread):
    def __init__(self, server: uvicorn.Server, sock: socket.socket) -> None:
        super().__init__(name="registry", daemon=True)
        self.server = server
        self.sock = sock

    def run(self) -> None:
        self.server.run(sockets=[self.sock])


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def registry_server(tmp_path: Path) -> Iterator[Registry]:
    """A real registry on a free loopback port: its own data dir, SQLite file, migrations."""
    data_dir = tmp_path / "registry"
    data_dir.mkdir()
    settings = Settings(data_dir=data_dir)
    upgrade_to_head(settings.database_url)
    app = create_app(settings)
    sock = _free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, ws="none", lifespan="on", timeout_keep_alive=30
    )
    server = uvicorn.Server(config)
    thread = _ServerThread(server, sock)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the registry did not start")
        time.sleep(0.01)
    try:
        yield Registry(url=f"http://127.0.0.1:{port}", data_dir=data_dir, settings=settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


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
def make_table() -> Callable[..., pa.Table]:
    return sample_table


@pytest.fixture
def publish_table(
    publisher: Identity,
) -> Callable[..., PublishResult]:
    """``publish_table(table, dataset="acme/books", **publish_kwargs)`` as the publisher."""

    def _publish(
        table: pa.Table | None = None, dataset: str = f"{NAMESPACE}/books", **kwargs: Any
    ) -> PublishResult:
        options: dict[str, Any] = {
            "license": "CC-BY-4.0",
            "terms": TERMS,
            "description": "test corpus",
            "progress": False,
        }
        options.update(kwargs)
        return publish(
            publisher.client,
            table if table is not None else sample_table(),
            dataset=dataset,
            key=publisher.key,
            **options,
        )

    return _publish
