"""Reading blob bytes from the object store a registry redirects to (``307`` to a pre-signed
URL, ``OSTRACA_BLOB_DELIVERY=presign``).

The URL is the whole credential: the request to the storage host carries ``Range`` and nothing
of the registry's (no bearer token, no cookie), on a connection of its own that is closed
afterwards. The range is the one the registry signed — the one the client asked the registry
for — and the answer must be exactly it: ``206``, a ``Content-Range`` that starts and ends
there, and its length. Anything else (an expired URL's ``403``, a ``200`` with the whole
object, a wrong range or length) raises :class:`StorageAnswerError`, which the fetcher treats as
a dropped connection: it asks the registry again, from the first byte it has not received, and
gets a fresh URL. A body cut short ends in ``IncompleteRead`` and is resumed the same way. Every
byte still goes through the fetcher's chunk verification.
"""

from __future__ import annotations

import contextlib
import http.client
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

from ostraca.protocol_spec import MalformedError

from .config import ReadLimits
from .receive import BodyReader, deadline_alarm

MAX_ERROR_BYTES = 4096
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$", re.ASCII)
_MESSAGE = re.compile(rb"<Message>([^<]{0,200})</Message>")


class StorageAnswerError(http.client.HTTPException):
    """The object store did not answer the pre-signed range: ask the registry again."""


@contextlib.contextmanager
def presigned(
    redirect: http.client.HTTPResponse,
    start: int,
    end: int,
    limits: ReadLimits,
    timeout: float,
    deadline: float,
) -> Iterator[tuple[http.client.HTTPResponse, BodyReader]]:
    """Follow the registry's ``307``: GET bytes ``start``..``end`` from its ``Location`` on a
    connection of our own (shut at ``deadline``, closed at the end of the block); yields the
    checked ``206`` answer and its body reader."""
    redirect.read()
    location = redirect.getheader("Location") or ""
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MalformedError(f"the registry redirected to {location[:100]!r}, not an http(s) URL")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=timeout)
    target = f"{parts.path or '/'}?{parts.query}" if parts.query else parts.path or "/"
    # The URL is the credential: only Range goes with it, never the registry's headers.
    headers = {"Range": f"bytes={start}-{end}", "Accept-Encoding": "identity"}
    with contextlib.closing(conn), deadline_alarm(conn, deadline):
        conn.request("GET", target, headers={**headers, "Connection": "close"})
        resp = conn.getresponse()
        _check(resp, parts.hostname, start, end)
        yield resp, BodyReader(resp, limits, f"{parts.scheme}://{parts.netloc}{parts.path}")


def _check(resp: http.client.HTTPResponse, host: str, start: int, end: int) -> None:
    if resp.status != 206:
        found = _MESSAGE.search(resp.read(MAX_ERROR_BYTES))
        why = found.group(1).decode("utf-8", "replace") if found else resp.reason
        raise StorageAnswerError(f"{host} answered HTTP {resp.status} ({why}) to a pre-signed URL")
    got = _CONTENT_RANGE.match(resp.getheader("Content-Range") or "")
    if got is None or (int(got.group(1)), int(got.group(2))) != (start, end):
        raise StorageAnswerError(
            f"{host} sent {resp.getheader('Content-Range')!r}, not bytes {start}-{end}"
        )
    if resp.length != end - start + 1:
        raise StorageAnswerError(
            f"{host} sent a body of {resp.length} bytes for the {end - start + 1} of the range"
        )
