"""Bulk blob download: ``http.client`` into reused buffers, hashed and verified as bytes arrive.

This is the hot path of a verified client (see PERFORMANCE.md): httpx's pure-Python receive path
costs ~3 CPU-seconds per GB, a fresh buffer per shard costs page faults, so each thread owns
one keep-alive ``http.client`` connection and one preallocated buffer, ``readinto`` fills it,
and the bytes go straight to a :class:`BlobSink` (which hashes them — hashlib releases the GIL
on large updates — and writes them to the cache's temp file). The length the signed manifest
promised is a hard cap: more bytes are never read. A dropped connection is resumed with
``Range`` from the last byte received, a bounded number of times. problem+json answers become
our typed errors in exactly one place, :func:`error_from_response`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol
from urllib.parse import urlsplit

from ostraca.protocol_spec import (
    DigestMismatchError,
    MalformedError,
    OstracaError,
    VerificationError,
)
from ostraca.protocol_spec.errors import UnavailableError, error_from_code

BUFFER_BYTES = 1024 * 1024
DIGEST_BYTES = 32
MAX_PROBLEM_BYTES = 64 * 1024


class BlobSink(Protocol):
    """Receives a blob's bytes in order, from ``offset`` (the resume point) on."""

    def write(self, data: memoryview) -> None: ...


def error_from_response(status: int, content_type: str, body: bytes, what: str) -> OstracaError:
    """Translate an HTTP error answer (problem+json when the registry sent one) to our error."""
    code, detail, hint = "", "", None
    if "json" in content_type:
        try:
            problem = json.loads(body)
        except ValueError:
            problem = None
        if isinstance(problem, dict):
            code = str(problem.get("code") or "")
            detail = str(problem.get("detail") or problem.get("title") or "")
            raw_hint = problem.get("hint")
            hint = str(raw_hint) if raw_hint else None
    if not code:
        code = {
            401: "unauthenticated",
            403: "access_denied",
            404: "not_found",
            416: "range_not_satisfiable",
            503: "unavailable",
        }.get(status, "error")
    message = f"{what}: {detail}" if detail else f"{what}: HTTP {status}"
    return error_from_code(code, message, hint=hint)


class ChunkVerifier:
    """Checks a blob chunk by chunk against its signed chunk list, and whole at the end.

    ``write`` (one thread) stores bytes at the current offset of ``fd`` and hashes them;
    ``verified`` only ever advances past a chunk whose digest matched. Readers call
    :meth:`wait_for` to block until a byte range is verified (or the download failed), so a
    decoder fed through it never sees an unverified byte.
    """

    def __init__(
        self,
        *,
        name: str,
        digest: str,
        size: int,
        chunk_bytes: int,
        chunk_list: bytes,
        fd: int,
    ) -> None:
        expected_chunks = max(1, -(-size // chunk_bytes))
        if len(chunk_list) != DIGEST_BYTES * expected_chunks:
            raise DigestMismatchError(
                f"{name}: chunk list has {len(chunk_list) // DIGEST_BYTES} digests, "
                f"expected {expected_chunks}"
            )
        self.name = name
        self.digest = digest
        self.size = size
        self.chunk_bytes = chunk_bytes
        self._chunks = chunk_list
        self._last_start = (size - 1) // chunk_bytes * chunk_bytes
        self._fd = fd
        self._whole = hashlib.sha256()
        self._chunk = hashlib.sha256()
        self._pos = 0
        self.verified = 0
        self._error: BaseException | None = None
        self._done = False
        self._cond = threading.Condition()

    @property
    def position(self) -> int:
        """Bytes received so far (the ``Range`` start of a resume)."""
        return self._pos

    def resume_existing(self) -> int:
        """Re-verify what a partial file already holds; return the verified prefix length.

        Chunks are checked from the start; the first one that does not match (a sparse hole, a
        torn write) and everything after it are downloaded again.
        """
        view = bytearray(self.chunk_bytes)
        mv = memoryview(view)
        pos = 0
        while pos < self.size:
            n = min(self.chunk_bytes, self.size - pos)
            got = os.preadv(self._fd, [mv[:n]], pos)
            if got != n:
                break
            if hashlib.sha256(mv[:n]).digest() != self._expected(pos // self.chunk_bytes):
                break
            self._whole.update(mv[:n])
            pos += n
        with self._cond:
            self._pos = self.verified = pos
            self._cond.notify_all()
        return pos

    def _expected(self, index: int) -> bytes:
        return self._chunks[index * DIGEST_BYTES : (index + 1) * DIGEST_BYTES]

    def write(self, data: memoryview) -> None:
        if self._pos + len(data) > self.size:
            raise DigestMismatchError(f"{self.name}: more bytes than the manifest's {self.size}")
        written = 0
        while written < len(data):
            written += os.pwrite(self._fd, data[written:], self._pos + written)
        self._whole.update(data)
        # Hash the chunk pieces; a piece never crosses a chunk boundary.
        off = 0
        while off < len(data):
            in_chunk = self._pos % self.chunk_bytes
            take = min(len(data) - off, self.chunk_bytes - in_chunk)
            self._chunk.update(data[off : off + take])
            off += take
            self._pos += take
            if self._pos % self.chunk_bytes == 0 or self._pos == self.size:
                index = (self._pos - 1) // self.chunk_bytes
                if self._chunk.digest() != self._expected(index):
                    err = DigestMismatchError(
                        f"{self.name}: chunk {index} (bytes {index * self.chunk_bytes}.."
                        f"{self._pos - 1}) does not match the signed chunk list"
                    )
                    self.fail(err)
                    raise err
                self._chunk = hashlib.sha256()
                with self._cond:
                    self.verified = self._pos
                    self._cond.notify_all()

    def finish(self) -> None:
        """The whole-blob check: every byte arrived and the sha256 is the manifest's."""
        if self._pos != self.size:
            err: VerificationError = DigestMismatchError(
                f"{self.name}: got {self._pos} of {self.size} bytes"
            )
        elif self._whole.hexdigest() != self.digest:
            err = DigestMismatchError(f"{self.name}: sha256 does not match the manifest")
        else:
            with self._cond:
                self._done = True
                self._cond.notify_all()
            return
        self.fail(err)
        raise err

    def fail(self, error: BaseException) -> None:
        """Wake readers with ``error`` (download or verification failed)."""
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify_all()

    def wait_for(self, end: int) -> None:
        """Block until bytes ``[0, end)`` are verified; raise the failure if there is one.

        The last chunk's bytes are released only with the whole-blob check, so the rows of a
        blob's final chunk are never used before the entire blob matched its sha256.
        """
        with self._cond:
            while True:
                if self._error is not None:
                    raise self._error
                if self._done or end <= min(self.verified, self._last_start):
                    return
                self._cond.wait()


class BlobFetcher:
    """Downloads blobs from ``GET {base_url}/v1/blobs/sha256:<hex>``.

    ``headers`` is called for each request (the bearer token may be refreshed between them).
    Thread-safe: each thread uses its own keep-alive connection and buffer.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Callable[[], Mapping[str, str]],
        timeout: float = 60.0,
        retries: int = 5,
        buffer_bytes: int = BUFFER_BYTES,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MalformedError(f"registry URL must be http(s)://host[:port], got {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._headers = headers
        self.timeout = timeout
        self.retries = retries
        self._buffer_bytes = buffer_bytes
        self._local = threading.local()
        self._conns: dict[int, http.client.HTTPConnection] = {}
        self._conns_lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        me = threading.get_ident()
        with self._conns_lock:
            conn = self._conns.get(me)
            if conn is None:
                cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                conn = cls(self._host, self._port, timeout=self.timeout)
                self._conns[me] = conn
            return conn

    def _drop_connection(self) -> None:
        with self._conns_lock:
            conn = self._conns.pop(threading.get_ident(), None)
        if conn is not None:
            conn.close()

    def _buffer(self) -> memoryview:
        buf: memoryview | None = getattr(self._local, "buf", None)
        if buf is None:
            buf = memoryview(bytearray(self._buffer_bytes))
            self._local.buf = buf
        return buf

    def prune(self) -> None:
        """Close the connections of threads that have ended (a finished prefetch pool's)."""
        alive = {t.ident for t in threading.enumerate()}
        with self._conns_lock:
            dead = [i for i in self._conns if i not in alive]
            conns = [self._conns.pop(i) for i in dead]
        for conn in conns:
            conn.close()

    def close(self) -> None:
        """Close every connection this fetcher opened."""
        with self._conns_lock:
            conns = list(self._conns.values())
            self._conns.clear()
        for conn in conns:
            conn.close()

    def path(self, digest: str) -> str:
        return f"{self._prefix}/v1/blobs/sha256:{digest}"

    def check_access(self, digest: str, *, what: str) -> None:
        """Ask the registry whether we may still read ``digest`` (one byte, ``Range: 0-0``).

        Raises the registry's error (``RevokedError``, ``ExpiredError``, ``AccessDeniedError``…).
        Used before handing out a shard that came from the cache or a prefetch, so a revocation
        takes effect at the next shard even when no bytes need downloading.
        """
        sink = _Discard()
        self.fetch(digest, size=1, sink=sink, what=what, full_size=None)

    def fetch(
        self,
        digest: str,
        *,
        size: int,
        sink: BlobSink,
        what: str,
        offset: int = 0,
        full_size: int | None = -1,
    ) -> None:
        """Send bytes ``[offset, size)`` of the blob to ``sink``, resuming after drops.

        ``size`` is the length the signed manifest promised; ``full_size`` the blob's length when
        it differs from ``size`` (``None``: unknown, used by :meth:`check_access`).
        """
        full = size if full_size == -1 else full_size
        progress = [offset]
        failures = 0
        while progress[0] < size:
            before = progress[0]
            try:
                self._one_request(digest, progress, size, full, sink, what)
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                failures = 1 if progress[0] > before else failures + 1
                if failures > self.retries:
                    raise UnavailableError(
                        f"{what}: download failed after {self.retries} retries: {exc}",
                        hint="check the network and run the command again; it resumes",
                    ) from exc
                time.sleep(min(2.0, 0.05 * 2**failures))

    def _one_request(
        self,
        digest: str,
        progress: list[int],
        size: int,
        full: int | None,
        sink: BlobSink,
        what: str,
    ) -> None:
        pos = progress[0]
        conn = self._connection()
        headers = dict(self._headers())
        headers["Accept-Encoding"] = "identity"
        if pos > 0 or size != full:
            headers["Range"] = f"bytes={pos}-{size - 1}"
        conn.request("GET", self.path(digest), headers=headers)
        resp = conn.getresponse()
        if resp.status >= 400:
            body = resp.read(MAX_PROBLEM_BYTES)
            if resp.length:  # more than we care to read: do not reuse the connection
                self._drop_connection()
            raise error_from_response(resp.status, resp.getheader("Content-Type") or "", body, what)
        skip = 0
        if resp.status == 200 and pos > 0:
            skip = pos  # the server ignored Range: discard what we already have
        elif resp.status not in (200, 206):
            self._drop_connection()
            raise UnavailableError(f"{what}: unexpected HTTP {resp.status}")
        buf = self._buffer()
        try:
            while skip > 0:
                n = resp.readinto(buf[: min(len(buf), skip)])
                if n == 0:
                    raise http.client.IncompleteRead(b"", skip)
                skip -= n
            while pos < size:
                n = resp.readinto(buf[: min(len(buf), size - pos)])
                if n == 0:
                    raise http.client.IncompleteRead(b"", size - pos)
                sink.write(buf[:n])
                pos += n
                progress[0] = pos
        finally:
            # Never read past what the manifest promised: an answer with bytes left over (or of
            # unknown length) ends the connection instead of being drained.
            if resp.length != 0:
                self._drop_connection()


class _Discard:
    def write(self, data: memoryview) -> None:
        pass
