"""The local content-addressed blob cache: ``<root>/blobs/sha256/<hex>``.

Rules that make it safe to share between processes and to trust:

- A blob appears under its final name only by ``os.replace`` of a complete, ``fdatasync``-ed file
  whose every byte was verified against the signed manifest (every chunk against the signed
  chunk list and the length, SPEC 2.5; also the whole sha256 with ``verify="paranoid"``). There
  is never a half file under a final name. A cached blob is re-checked cheaply (its size) each
  time it is used; chunk lists (a few KiB) are re-hashed; ``recheck_cache`` re-verifies a
  shard's every chunk (SPEC 5.7.1 says what the default leaves open).
- One process at a time downloads a given blob: it holds an exclusive ``fcntl`` lock on
  ``<root>/tmp/<hex>.lock`` while it writes ``<root>/tmp/<hex>.partial``. Another process asking
  for the same blob waits on the lock and then finds the finished blob. A partial file left by a
  dropped connection or a dead process is resumed by the next holder of the lock (its bytes are
  re-verified chunk by chunk first).
- The byte budget is kept by LRU eviction: a use sets the file's mtime, eviction removes the
  oldest files until the total fits. Unlinking a blob that another process has open or mapped
  is harmless on POSIX (the inode lives until the last user closes it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ostraca.protocol_spec import MalformedError

_HEX = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_BUDGET = 20 * 1024**3


def _check_hex(digest: str) -> str:
    if not _HEX.match(digest):
        raise MalformedError(f"not a sha256 hex digest: {digest!r}")
    return digest


@dataclass(frozen=True, slots=True)
class CacheInfo:
    root: Path
    blobs: int
    bytes: int
    budget: int
    partial_bytes: int


class PartialBlob:
    """A locked, pre-sized temp file being filled with one blob's bytes.

    ``fd`` is open read-write; the file is already ``size`` bytes long (sparse where not yet
    written), so it can be memory-mapped while it fills. ``fresh``: it holds no earlier bytes
    (nothing to resume). Exactly one of :meth:`commit` or
    :meth:`abort` must be called; both release the lock.
    """

    def __init__(self, cache: BlobCache, digest: str, size: int, lock_fd: int) -> None:
        self.cache = cache
        self.digest = digest
        self.size = size
        self.path = cache.partial_path(digest)
        self._lock_fd = lock_fd
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        st = os.fstat(self.fd)
        # Nothing to resume when the file is new or holds no data at all (re-hashing a sparse
        # file's first chunk of zeros costs a chunk's read and sha256 per shard).
        self.fresh = st.st_size == 0 or st.st_blocks == 0
        if st.st_size != size:
            os.ftruncate(self.fd, size)
        self._done = False

    def commit(self, *, durable: bool = True) -> Path:
        """Move the (verified) file under its final name and release the lock."""
        if self._done:
            raise RuntimeError("partial blob already finished")
        try:
            if durable:
                os.fdatasync(self.fd)
            final = self.cache.blob_path(self.digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, final)
            return final
        finally:
            self._finish()

    def abort(self, *, keep: bool = False) -> None:
        """Give up; keep the partial file for a later resume only when ``keep`` (network
        failures), never after a verification failure."""
        if self._done:
            return
        try:
            if not keep:
                self.path.unlink(missing_ok=True)
        finally:
            self._finish()

    def _finish(self) -> None:
        self._done = True
        with contextlib.suppress(OSError):
            os.close(self.fd)
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)


class BlobCache:
    """Content-addressed blob store under ``root`` with a byte ``budget`` (LRU eviction)."""

    def __init__(self, root: Path, *, budget: int = DEFAULT_BUDGET) -> None:
        if budget < 0:
            raise MalformedError("cache budget must not be negative")
        self.root = Path(root)
        self.budget = budget
        self._blobs = self.root / "blobs" / "sha256"
        self._tmp = self.root / "tmp"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        return self._blobs / _check_hex(digest)

    def partial_path(self, digest: str) -> Path:
        return self._tmp / f"{_check_hex(digest)}.partial"

    def open(self, digest: str, size: int) -> BinaryIO | None:
        """The cached blob opened for reading, or ``None``.

        A file of the wrong size is not the verified blob (something outside the cache touched
        it): it is removed and ``None`` returned. A hit counts as a use for LRU.
        """
        path = self.blob_path(digest)
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            return None
        if os.fstat(fh.fileno()).st_size != size:
            fh.close()
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return fh

    def discard(self, digest: str) -> None:
        """Remove a cached blob that failed a re-check (``recheck_cache``, SPEC 5.7.1)."""
        self.blob_path(digest).unlink(missing_ok=True)

    def read(self, digest: str, size: int) -> bytes | None:
        """A small cached blob's bytes (size-checked), or ``None``."""
        fh = self.open(digest, size)
        if fh is None:
            return None
        with fh:
            return fh.read()

    def acquire(self, digest: str, size: int) -> PartialBlob | None:
        """Lock ``digest`` for writing. ``None`` when the blob is (by now) in the cache.

        Blocks while another process or thread downloads the same blob.
        """
        lock_path = self._tmp / f"{_check_hex(digest)}.lock"
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            final = self.blob_path(digest)
            if final.exists() and final.stat().st_size == size:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
                os.close(lock_fd)
                return None
            return PartialBlob(self, digest, size, lock_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(lock_fd)
            raise

    def put(self, digest: str, data: bytes) -> Path:
        """Store a small blob the caller has already verified (chunk lists)."""
        partial = self.acquire(digest, len(data))
        if partial is None:
            return self.blob_path(digest)
        try:
            os.pwrite(partial.fd, data, 0)
        except BaseException:
            partial.abort()
            raise
        return partial.commit(durable=False)

    def _entries(self) -> list[os.DirEntry[str]]:
        with os.scandir(self._blobs) as it:
            return [e for e in it if e.is_file(follow_symlinks=False) and _HEX.match(e.name)]

    def evict(self, *, protect: frozenset[str] = frozenset()) -> int:
        """Remove least recently used blobs until the total fits the budget; return bytes freed.

        ``protect`` names blobs in use by this process; they are never evicted (so the total
        may stay above a budget smaller than what one reader holds at once).
        Runs under a cache-wide lock so two processes do not both evict for the same excess.
        """
        lock_fd = os.open(self._tmp / "evict.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            stats: list[tuple[float, int, str]] = []
            for entry in self._entries():
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                stats.append((st.st_mtime, st.st_size, entry.name))
            total = sum(s for _, s, _ in stats)
            freed = 0
            stats.sort()
            for _, size, name in stats:
                if total <= self.budget:
                    break
                if name in protect:
                    continue
                (self._blobs / name).unlink(missing_ok=True)
                total -= size
                freed += size
            return freed
        finally:
            os.close(lock_fd)

    def info(self) -> CacheInfo:
        sizes = []
        for entry in self._entries():
            with contextlib.suppress(FileNotFoundError):
                sizes.append(entry.stat(follow_symlinks=False).st_size)
        partial = 0
        with os.scandir(self._tmp) as it:
            for entry in it:
                if entry.name.endswith(".partial"):
                    with contextlib.suppress(FileNotFoundError):
                        partial += entry.stat().st_blocks * 512
        return CacheInfo(
            root=self.root,
            blobs=len(sizes),
            bytes=sum(sizes),
            budget=self.budget,
            partial_bytes=partial,
        )

    def clear(self) -> int:
        """Remove every blob and every partial file not being written now; return bytes freed."""
        freed = 0
        for entry in self._entries():
            with contextlib.suppress(FileNotFoundError):
                freed += entry.stat(follow_symlinks=False).st_size
                os.unlink(entry.path)
        with os.scandir(self._tmp) as it:
            names = [e.name for e in it if e.name.endswith(".partial")]
        for name in names:
            lock_fd = os.open(self._tmp / (name[:-8] + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                (self._tmp / name).unlink(missing_ok=True)
            finally:
                os.close(lock_fd)
        return freed
