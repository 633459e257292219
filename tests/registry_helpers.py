"""A real registry for tests: uvicorn on a loopback port, its own data dir, SQLite, migrated.

:func:`running_registry` is what the ``registry_server`` fixture (``tests/conftest.py``) uses;
test folders that want one registry for a whole module or session call it themselves.
:func:`publish_as` publishes with the real publisher (``client/publish.py``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import uvicorn
from fastapi import FastAPI

from ostraca.client.publishing import PublishResult, publish
from ostraca.server.app import create_app
from ostraca.server.migrate import upgrade_to_head
from ostraca.server.settings import Settings

from .client.client_helpers import TERMS, Identity


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


@contextmanager
def serve_app(app: FastAPI) -> Iterator[str]:
    """``app`` under uvicorn on a free loopback port until the block ends; yields its base URL."""
    sock = _free_socket()
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
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def running_registry(data_dir: Path) -> Iterator[Registry]:
    """A registry serving ``data_dir`` (created) until the block ends."""
    data_dir.mkdir(parents=True)
    settings = Settings(data_dir=data_dir)
    upgrade_to_head(settings.database_url)
    with serve_app(create_app(settings)) as url:
        yield Registry(url=url, data_dir=data_dir, settings=settings)


def publish_as(
    publisher: Identity, table: pa.Table | list[pa.Table], *, dataset: str, **kwargs: Any
) -> PublishResult:
    """Publish ``table`` as ``dataset``'s next version, signed by ``publisher``."""
    options: dict[str, Any] = {
        "license": "CC-BY-4.0",
        "terms": TERMS,
        "description": "test corpus",
        "progress": False,
    }
    options.update(kwargs)
    return publish(publisher.client, table, dataset=dataset, key=publisher.key, **options)
