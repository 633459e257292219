"""A hostile registry for the tests: a real HTTP server (``http.server``, one thread per
connection) whose answers the test chooses per path.

Each route (an exact path) is an :class:`Answer`: a status, headers, and a body sent in a chosen
way — whole, endless, at a trickle, cut short, or with a ``Content-Length`` that lies.
:meth:`Hostile.blob` serves a blob (any path that ends with its digest) honouring ``Range`` and
misbehaving first, so that a test can check the client resumes from where it stopped; every
request's ``Range`` and the bytes sent are recorded. Any
path without a route is proxied to ``upstream`` (a real registry) when one is given, so a
client can do its first calls for real and meet the hostile answer where the test wants it.
"""

from __future__ import annotations

import http.client
import http.server
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

PIECE = 64 * 1024
ZEROS = bytes(PIECE)


@dataclass
class Answer:
    """One canned answer. ``body`` is sent as ``mode`` says:

    - ``"whole"``: as is, with its true ``Content-Length`` (or ``length`` when given: a lie);
    - ``"endless"``: ``body`` first, then zeros until the client hangs up (no length, or
      ``length`` declared);
    - ``"trickle"``: one byte every ``interval`` seconds; with ``slow_headers`` the status line
      and headers trickle too;
    - ``"cut"``: the first ``cut`` bytes of ``body``, then the connection closes.
    """

    body: bytes = b""
    status: int = 200
    content_type: str = "application/json"
    mode: str = "whole"
    length: int | None = None
    interval: float = 1.0
    slow_headers: bool = False
    cut: int = 0


@dataclass
class BlobLog:
    """What :meth:`Hostile.blob` was asked and sent."""

    ranges: list[str | None] = field(default_factory=list)
    sent: int = 0


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False
    hostile: Hostile


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle_one_request(self) -> None:
        """Read the request line and headers, then answer any method the same way."""
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline or not self.parse_request():
                self.close_connection = True
                return
            self.server.hostile.handle(self)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class Hostile:
    """The server; :attr:`url` is its base URL. Use :func:`hostile_registry`."""

    def __init__(self, upstream: str | None = None) -> None:
        self.routes: dict[str, Answer] = {}
        self.blobs: dict[str, tuple[bytes, Answer, BlobLog]] = {}
        self._times: dict[str, int] = {}
        self.upstream = urlsplit(upstream) if upstream else None
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hostile = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def blob(self, digest: str, data: bytes, first: Answer, *, times: int = 1) -> BlobLog:
        """Serve ``data`` at any path ending with ``digest``, with ``Range``. The first
        ``times`` requests for more than ``first.cut`` bytes are answered as ``first`` says:
        ``cut`` after ``first.cut`` bytes, ``trickle`` after them, a lying ``length``;
        ``slow_headers`` trickles the status line."""
        log = BlobLog()
        self.blobs[digest] = (data, first, log)
        self._times[digest] = times
        return log

    # dispatch

    def handle(self, h: _Handler) -> None:
        path = h.path.split("?")[0]
        digest = path.rpartition(":")[2]
        if digest in self.blobs and h.command == "GET":
            self._blob(h, digest, *self.blobs[digest])
        elif path in self.routes:
            self._answer(h, self.routes[path])
        elif self.upstream is not None:
            self._proxy(h)
        else:
            self._answer(h, Answer(b'{"code":"not_found"}', status=404))

    def _answer(self, h: _Handler, a: Answer) -> None:
        length = (
            a.length if a.length is not None else (None if a.mode == "endless" else len(a.body))
        )
        head = f"HTTP/1.1 {a.status} X\r\nContent-Type: {a.content_type}\r\n"
        head += f"Content-Length: {length}\r\n" if length is not None else "Connection: close\r\n"
        raw = (head + "\r\n").encode()
        if a.slow_headers:
            _trickle(h, raw, a.interval)
        else:
            h.wfile.write(raw)
        if a.mode == "trickle":
            _trickle(h, a.body, a.interval)
        elif a.mode == "cut":
            h.wfile.write(a.body[: a.cut])
            h.close_connection = True
        else:
            h.wfile.write(a.body)
            while a.mode == "endless":
                h.wfile.write(ZEROS)
        if length is None:
            h.close_connection = True

    def _blob(self, h: _Handler, digest: str, data: bytes, first: Answer, log: BlobLog) -> None:
        rng = h.headers.get("Range")
        log.ranges.append(rng)
        start, end = 0, len(data) - 1
        if rng:
            lo, _, hi = rng.removeprefix("bytes=").partition("-")
            start, end = int(lo), int(hi) if hi else len(data) - 1
        body = data[start : end + 1]
        # Misbehave the first ``times`` answers longer than ``cut`` (not a one-byte probe).
        misbehave = self._times[digest] > 0 and len(body) > first.cut
        self._times[digest] -= misbehave
        if misbehave and first.slow_headers:
            _trickle(h, b"HTTP/1.1 200 OK\r\n", first.interval)
            return
        length = first.length if misbehave and first.length is not None else len(body)
        h.send_response(206 if rng else 200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(length))
        if rng:
            h.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        h.end_headers()
        if not misbehave or first.mode == "whole":
            # Counted before the write: the client may have read the bytes (and the test the
            # count) before this thread runs again.
            sent = body[:length]
            log.sent += len(sent)
            h.wfile.write(sent)
            return
        log.sent += first.cut
        h.wfile.write(body[: first.cut])
        h.wfile.flush()
        if first.mode == "trickle":
            for i in range(first.cut, len(body)):
                time.sleep(first.interval)
                log.sent += 1
                h.wfile.write(body[i : i + 1])
                h.wfile.flush()
        h.close_connection = True

    def _proxy(self, h: _Handler) -> None:
        assert self.upstream is not None
        conn = http.client.HTTPConnection(self.upstream.hostname or "", self.upstream.port)
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n) if n else None
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(h.command, h.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        h.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in (
                "transfer-encoding",
                "connection",
                "content-length",
                "date",
                "server",
            ):
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
        conn.close()

    def __enter__(self) -> Hostile:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _trickle(h: _Handler, data: bytes, interval: float) -> None:
    for i in range(len(data)):
        h.wfile.write(data[i : i + 1])
        h.wfile.flush()
        time.sleep(interval)
    h.close_connection = True


@contextmanager
def hostile_registry(upstream: str | None = None) -> Iterator[Hostile]:
    """A running :class:`Hostile` (proxying unrouted paths to ``upstream``), stopped after."""
    with Hostile(upstream) as server:
        yield server
