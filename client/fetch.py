"""Bulk blob download: ``http.client`` ``readinto`` into one 1 MiB reused buffer per thread,
each piece hashed while it is hot in the CPU cache and ``pwrite``-n to the cache's temp file.

This is the hot path of a verified client (see PERFORMANCE.md): httpx's pure-Python receive path
costs ~3 CPU-seconds per GB and every extra copy or hash pass of a shard costs CPU the decoder
needs, so each thread owns one keep-alive ``http.client`` connection and one
:data:`BUFFER_BYTES` buffer (small enough to stay in L2): ``readinto`` (one ``recv_into``) fills
it, :class:`ChunkVerifier` hashes the piece (hashlib releases the GIL, so prefetch threads hash
on both cores while the caller decodes), ``pwrite``-s it (a whole-page write: the kernel fills
page-cache pages without zeroing them first) and checks each completed chunk against the signed
chunk list. (Receiving straight into a writable memory map of the sparse temp file was measured
too: every first touch of a page faults and zero-fills it, ~2–3× the system CPU of this on the
2-core VM — 0.9–2.7 against 0.4–0.6 s/GB; a 2 MiB buffer, out of L2, was as bad.) The length
the signed manifest promised is a hard cap: more bytes are never read. A dropped connection is
resumed with ``Range`` from the last byte received, a bounded number of times. problem+json
answers become our typed errors through :func:`.problems.error_from_problem`, as the API
client's do.

Deadlines (:class:`~ostraca.client.config.ReadLimits`): a blob must arrive within
``fetch_deadline_s`` (resumes included; a timer shuts the socket when it passes, so a trickle of
headers cannot outlast it either), and an answer that delivers fewer than ``min_rate_bytes_s``
bytes per second over ``stall_window_s`` is stalled: the connection is dropped and the download
resumed with ``Range`` from where it stopped (a silent one times out after ``stall_window_s``).
The check is monotonic-clock arithmetic after each receive (one ``readinto1``, one ``recv``;
:mod:`.receive`).
Either failure, once retries or the deadline are spent, is an :class:`UnavailableError` naming
the URL.
"""

from __future__ import annotations

import hashlib
import http.client
import mmap
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol
from urllib.parse import urlsplit

from ostraca.protocol_spec import (
    DigestMismatchError,
    MalformedError,
    VerificationError,
    chunk_count,
    chunk_list_bytes,
)
from ostraca.protocol_spec.chunks import DEFAULT_CHUNK_DIGEST, DIGEST_BYTES, chunk_hasher
from ostraca.protocol_spec.errors import UnavailableError

from .config import DEFAULT_LIMITS, ReadLimits
from .problems import error_from_problem
from .receive import BodyReader, StalledError, deadline_alarm
from .redirects import presigned

BUFFER_BYTES = 1024 * 1024
"""The receive buffer of each thread: in L2 (2 MiB per core here) while it is hashed and written.
Measured cold, CPU-s/GB of the client: 256 KiB 1.77–2.01, 512 KiB 1.73–1.79, 1 MiB 1.66–1.71,
2 MiB (no longer in L2) 2.10–3.04."""
MAX_PROBLEM_BYTES = 64 * 1024


class BlobSink(Protocol):
    """Receives a blob's bytes in order, from ``offset`` (the resume point) on."""

    def write(self, data: memoryview) -> None: ...


class ChunkVerifier:
    """Checks a blob chunk by chunk against its signed chunk list (SPEC 2.5).

    Bytes arrive in order through :meth:`write`: each piece is hashed (into its chunk's digest)
    and ``pwrite``-n to ``fd`` (open read-write); ``verified`` only ever advances past a chunk
    whose digest matched. Readers call
    :meth:`wait_for` to block until a byte range is verified (or the download failed), so a
    decoder fed through it never sees an unverified byte. ``on_verified(start, end)``, if given,
    is called with each verified range before any reader is woken for it (an encrypted group's
    chunks are opened there); if it raises, the download fails with its error.

    Every byte of the blob lies in exactly one chunk and the chunk list is authenticated by the
    manifest's ``chunks`` digest, so all chunks verified plus the length equal to ``size`` is
    the whole-blob check (collision resistance of ``chunk_digest``, the manifest's chunk digest
    algorithm, SPEC 2.5). ``whole=True`` (``verify="paranoid"``) also computes the whole-blob
    sha256 and compares it with ``digest``: a second pass over every byte, redundant unless the
    publisher signed an inconsistent manifest.
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
        whole: bool = False,
        chunk_digest: str = DEFAULT_CHUNK_DIGEST,
        on_verified: Callable[[int, int], None] | None = None,
    ) -> None:
        if len(chunk_list) != chunk_list_bytes(size, chunk_bytes):
            raise DigestMismatchError(
                f"{name}: chunk list has {len(chunk_list) // DIGEST_BYTES} digests, "
                f"expected {chunk_count(size, chunk_bytes)}"
            )
        self.name = name
        self.digest = digest
        self.size = size
        self.chunk_bytes = chunk_bytes
        self._chunks = chunk_list
        self._last_start = (size - 1) // chunk_bytes * chunk_bytes
        self._fd = fd
        self._whole = hashlib.sha256() if whole else None
        self._new = chunk_hasher(chunk_digest)
        self._chunk = self._new()
        self._on_verified = on_verified
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
            if self._digest(mv[:n]) != self._expected(pos // self.chunk_bytes):
                break
            if self._whole is not None:
                self._whole.update(mv[:n])
            pos += n
        self._pos = pos
        self._release(0, pos)
        return pos

    def check_stored(self, view: memoryview) -> None:
        """Verify a blob already stored whole (a cached copy, mapped as ``view``; ``fd`` is not
        used), chunk by chunk, releasing each as it matches, then :meth:`finish`. Raises (and
        fails readers with) :class:`DigestMismatchError` at the first chunk that differs."""
        if len(view) != self.size:
            err = DigestMismatchError(f"{self.name}: stored copy is not {self.size} bytes")
            self.fail(err)
            raise err
        mapping = view.obj
        for start in range(0, self.size, self.chunk_bytes):
            self._pos = min(self.size, start + self.chunk_bytes)
            with view[start : self._pos] as piece:
                self._check(start // self.chunk_bytes, self._digest(piece))
                if self._whole is not None:
                    self._whole.update(piece)
            if isinstance(mapping, mmap.mmap):  # the pages stay in the page cache: flat RSS
                page = start - start % mmap.PAGESIZE
                mapping.madvise(mmap.MADV_DONTNEED, page, self._pos - page)
        self.finish()

    def _digest(self, piece: memoryview) -> bytes:
        h = self._new()
        h.update(piece)
        return h.digest()

    def _expected(self, index: int) -> bytes:
        return self._chunks[index * DIGEST_BYTES : (index + 1) * DIGEST_BYTES]

    def _chunk_end(self, pos: int) -> int:
        return min(self.size, (pos // self.chunk_bytes + 1) * self.chunk_bytes)

    # BlobSink: bytes from a buffer

    def write(self, data: memoryview) -> None:
        if self._pos + len(data) > self.size:
            raise DigestMismatchError(f"{self.name}: more bytes than the manifest's {self.size}")
        written = 0
        while written < len(data):
            written += os.pwrite(self._fd, data[written:], self._pos + written)
        if self._whole is not None:
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
                self._check((self._pos - 1) // self.chunk_bytes, self._chunk.digest())
                self._chunk = self._new()

    def _check(self, index: int, got: bytes) -> None:
        """Chunk ``index`` (ending at the current position) hashed to ``got``: release it, or
        fail the download."""
        if got != self._expected(index):
            err = DigestMismatchError(
                f"{self.name}: chunk {index} (bytes {index * self.chunk_bytes}.."
                f"{self._pos - 1}) does not match the signed chunk list"
            )
            self.fail(err)
            raise err
        self._release(index * self.chunk_bytes, self._pos)

    def _release(self, start: int, end: int) -> None:
        """Bytes ``[start, end)`` (whole chunks) verified: hand them to ``on_verified`` (which
        may refuse them), then wake the readers waiting for them."""
        if self._on_verified is not None and end > start:
            try:
                self._on_verified(start, end)
            except BaseException as exc:
                self.fail(exc)
                raise
        with self._cond:
            self.verified = end
            self._cond.notify_all()

    def finish(self) -> None:
        """The end of the blob: every chunk verified and the length is the manifest's (and, with
        ``whole``, the whole-blob sha256 matches)."""
        if self.size == 0 and self._error is None:  # no chunk was ever complete: check the one
            self._check(0, self._digest(memoryview(b"")))
        if self._pos != self.size or self.verified != self.size:
            err: VerificationError = DigestMismatchError(
                f"{self.name}: got {self._pos} of {self.size} bytes"
            )
        elif self._whole is not None and self._whole.hexdigest() != self.digest:
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

        The last chunk's bytes are released only by :meth:`finish` (length checked, and the
        whole-blob digest with ``whole``), so the rows of a blob's final chunk are never used
        before the entire blob checked out.
        """
        with self._cond:
            while True:
                if self._error is not None:
                    raise self._error
                if self._done or end <= min(self.verified, self._last_start):
                    return
                self._cond.wait()


class BlobFetcher:
    """Downloads blobs from ``GET {base_url}/blobs/sha256:<hex>``, ``base_url`` being the
    dataset's URL the blobs are read through (``{registry}/v1/datasets/<ns>/<name>``).

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
        limits: ReadLimits = DEFAULT_LIMITS,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MalformedError(f"registry URL must be http(s)://host[:port], got {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._headers = headers
        self.timeout = min(timeout, limits.stall_window_s)
        self.limits = limits
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
        return f"{self._prefix}/blobs/sha256:{digest}"

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
        deadline = time.monotonic() + self.limits.fetch_deadline_s
        while progress[0] < size:
            before = progress[0]
            try:
                self._one_request(digest, progress, size, full, sink, what, deadline)
            except (OSError, http.client.HTTPException, StalledError) as exc:
                self._drop_connection()
                url = self._origin + self.path(digest)
                # Progress resets the count, unless it came at a stalled rate.
                gained = progress[0] > before and not isinstance(exc, StalledError)
                failures = 1 if gained else failures + 1
                hint = "check the network and run the command again; it resumes"
                if time.monotonic() >= deadline:
                    raise UnavailableError(
                        f"{what}: {url} did not arrive within fetch_deadline_s="
                        f"{self.limits.fetch_deadline_s:g} ({progress[0] - offset} of "
                        f"{size - offset} bytes)",
                        hint=hint,
                    ) from exc
                if failures > self.retries:
                    raise UnavailableError(
                        f"{what}: download of {url} failed after {self.retries} retries: {exc}",
                        hint=hint,
                    ) from exc
                time.sleep(min(2.0, 0.05 * 2**failures, max(0.0, deadline - time.monotonic())))

    def _one_request(
        self,
        digest: str,
        progress: list[int],
        size: int,
        full: int | None,
        sink: BlobSink,
        what: str,
        deadline: float,
    ) -> None:
        pos = progress[0]
        conn = self._connection()
        headers = dict(self._headers())
        headers["Accept-Encoding"] = "identity"
        if pos > 0 or size != full:
            headers["Range"] = f"bytes={pos}-{size - 1}"
        # Past the deadline the socket is shut, which ends any receive (headers included).
        with deadline_alarm(conn, deadline):
            conn.request("GET", self.path(digest), headers=headers)
            resp = conn.getresponse()
            if resp.status == 307:  # a pre-signed URL: the object store sends the bytes
                with presigned(resp, pos, size - 1, self.limits, self.timeout, deadline) as got:
                    self._receive(*got, progress, size, sink)
                return
            if resp.status >= 400:
                body = resp.read(MAX_PROBLEM_BYTES)
                if resp.length:  # more than we care to read: do not reuse the connection
                    self._drop_connection()
                raise error_from_problem(
                    resp.status,
                    body,
                    content_type=resp.getheader("Content-Type") or "",
                    request=f"GET {self.path(digest)}",
                    what=what,
                )
            reader = BodyReader(resp, self.limits, self._origin + self.path(digest))
            self._receive(resp, reader, progress, size, sink)

    def _receive(
        self,
        resp: http.client.HTTPResponse,
        body: BodyReader,
        progress: list[int],
        size: int,
        sink: BlobSink,
    ) -> None:
        """Read the answer's bytes ``[progress[0], size)`` into ``sink`` (a 200 to a ranged
        request is read from its start, and what we already have is skipped)."""
        pos = progress[0]
        skip = 0
        if resp.status == 200 and pos > 0:
            skip = pos  # the server ignored Range: discard what we already have
        elif resp.status == 206:
            start = (resp.getheader("Content-Range") or "").removeprefix("bytes ").split("-")[0]
            if start != str(pos):
                self._drop_connection()
                raise UnavailableError(f"{body.url}: asked for bytes from {pos}, got {start!r}")
        elif resp.status != 200:
            self._drop_connection()
            raise UnavailableError(f"{body.url}: unexpected HTTP {resp.status}")
        try:
            if skip > 0:
                buf = self._buffer()
                while skip > 0:
                    skip -= body.readinto(buf[: min(len(buf), skip)])
            buf = self._buffer()
            while pos < size:
                n = body.readinto(buf[: min(len(buf), size - pos)])
                sink.write(buf[:n])
                pos += n
                progress[0] = pos
        finally:
            # Never read past what the manifest promised: an answer with bytes left over (or of
            # unknown length) ends the connection instead of being drained.
            if body.left == 0:
                resp.close()
            else:
                self._drop_connection()


class _Discard:
    def write(self, data: memoryview) -> None:
        pass
