"""A reverse proxy in front of moto's S3 server that does what moto does not: it refuses a
pre-signed request that arrives after its expiry (``X-Amz-Date`` + ``X-Amz-Expires``, as S3
checks it, when the request arrives), and it injects the faults of a real network and store
on request: a body cut short, a late arrival, a body of the wrong length.

Every request is forwarded unchanged (method, path, query, headers, body) and every answer sent
back unchanged but for the faults, so the registry's own S3 traffic passes through it too.
``requests`` records what the storage host received (to check that no bearer token reaches it
and that no byte range is asked twice).
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}
EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message></Error>"
)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0


@dataclass
class Faults:
    """One-shot faults for the next pre-signed GET (each is used once, then cleared)."""

    cut_after: int | None = None
    """Send this many body bytes of the answer, then close the connection."""
    late_by: float = 0.0
    """Wait this long before checking the expiry (the request "arrives" late)."""
    wrong_start: bool = False
    """Answer 206 with a ``Content-Range`` that starts one byte later than asked."""
    send_delay: float = 0.0
    """Sleep this long between 64 KiB blocks of every pre-signed answer (not one-shot)."""


@dataclass
class S3Front:
    url: str
    faults: Faults = field(default_factory=Faults)
    requests: list[Seen] = field(default_factory=list)

    def presigned(self) -> list[Seen]:
        return [r for r in self.requests if "X-Amz-Expires=" in r.path]


def _expired(path: str, now: float) -> bool:
    query = parse_qs(urlsplit(path).query)
    if "X-Amz-Expires" not in query:
        return False
    signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return now > signed.timestamp() + int(query["X-Amz-Expires"][0])


def _handler(front: S3Front, upstream: tuple[str, int]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            del format, args

        def _forward(self) -> None:
            seen = Seen(self.command, self.path, dict(self.headers.items()))
            front.requests.append(seen)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            presigned = "X-Amz-Expires=" in self.path
            faults = front.faults
            if presigned and faults.late_by:
                time.sleep(faults.late_by)
                faults.late_by = 0.0
            if presigned and _expired(self.path, time.time()):
                seen.status = 403
                self._answer(403, {"Content-Type": "application/xml"}, EXPIRED)
                return
            conn = http.client.HTTPConnection(*upstream, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                seen.status = resp.status
                self._relay(resp, presigned)
            finally:
                conn.close()

        def _relay(self, resp: http.client.HTTPResponse, presigned: bool) -> None:
            faults = front.faults
            headers = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP}
            cut, delay = (faults.cut_after, faults.send_delay) if presigned else (None, 0.0)
            if presigned:
                faults.cut_after = None
                key = next((k for k in headers if k.lower() == "content-range"), None)
                if faults.wrong_start and key is not None:
                    faults.wrong_start = False
                    first, _, rest = headers[key].removeprefix("bytes ").partition("-")
                    headers[key] = f"bytes {int(first) + 1}-{rest}"
            self.send_response(resp.status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            sent = 0
            while block := resp.read(64 * 1024):
                if cut is not None and sent + len(block) > cut:
                    self.wfile.write(block[: cut - sent])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(block)
                sent += len(block)
                if delay:
                    time.sleep(delay)

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for k, v in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815 (http.server's names)

    return Handler


@contextmanager
def s3_front(upstream_url: str) -> Iterator[S3Front]:
    """Serve an :class:`S3Front` on a free loopback port, forwarding to ``upstream_url``."""
    parts = urlsplit(upstream_url)
    assert parts.hostname is not None
    upstream = (parts.hostname, parts.port or 80)
    front = S3Front(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(front, upstream))
    server.daemon_threads = True
    front.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="s3-front", daemon=True)
    thread.start()
    try:
        yield front
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
