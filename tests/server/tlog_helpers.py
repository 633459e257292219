"""For the transparency-log tests: a hostile proxy (a real HTTP server forwarding to a registry
and rewriting its answers) and a small published world."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

from ostraca.protocol_spec import Envelope
from ostraca.protocol_spec.models import utc_now
from ostraca.protocol_spec.wire import GrantItem

from ..client.client_helpers import Identity, make_identity
from ..registry_helpers import publish_as

Rewrite = Callable[[str, bytes], bytes]
"""``rewrite(path with query, body) -> body``: how the proxy changes an answer."""


class HostileProxy:
    """A real HTTP server in front of ``upstream``: it forwards every request and passes each
    answer through ``rewrite`` (identity by default); ``upstream`` may be switched (a fork)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rewrite: Rewrite = lambda _path, body: body
        self._http = httpx.Client(timeout=30)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                skip = {"host", "content-length", "connection", "accept-encoding"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                answer = proxy._http.request(
                    self.command, proxy.upstream + self.path, content=body, headers=headers
                )
                out = proxy.rewrite(self.path, answer.content)
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in {"content-length", "transfer-encoding", "connection"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HostileProxy:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()


@dataclass
class World:
    """A registry with a published dataset and a researcher granted access to it."""

    registry: str
    publisher: Identity
    researcher: Identity
    grant: GrantItem
    dataset: str = "acme/books"

    @property
    def grant_env(self) -> Envelope:
        return Envelope.from_dict(self.grant.envelope)


@contextmanager
def make_world(tmp_path: Path, registry: str, researcher_url: str) -> Iterator[World]:
    """Publish ``acme/books`` v1 at ``registry`` and grant it to a researcher whose client talks
    to ``researcher_url`` (the registry itself, or a proxy in front of it)."""
    publisher = make_identity(tmp_path, registry, "acme-lab", "institution")
    researcher = make_identity(tmp_path, researcher_url, "ada", "researcher")
    try:
        publisher.client.create_namespace("acme")
        publish_as(publisher, pa.table({"x": list(range(10))}), dataset="acme/books")
        request = researcher.client.request_access("acme/books", purpose="study")
        expires = utc_now() + timedelta(days=30)
        grant = publisher.client.approve(request.request_id, expires=expires)
        yield World(registry=registry, publisher=publisher, researcher=researcher, grant=grant)
    finally:
        publisher.client.close()
        researcher.client.close()
