"""Blob storage behind one small interface, and the local-directory implementation.

Uploads are written to a per-session temporary file; :meth:`BlobStorage.finalize` re-hashes it
and only then renames it to ``sha256/<hex>`` (atomic on POSIX, after fsync), so a partial or
unverified blob never appears under its final name.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import BinaryIO, ParamSpec, Protocol, TypeVar, runtime_checkable

from ostraca.protocol_spec.errors import (
    DigestMismatchError,
    InsufficientStorageError,
    MalformedError,
    NotFoundError,
)

BLOB_MODE = 0o640
"""A stored blob is readable by the registry's group: nginx's workers, put in that group, send
it (``OSTRACA_BLOB_DELIVERY=accel``). Uploads in progress stay 0600."""
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")
_UPLOAD_RE = re.compile(r"^[0-9a-f]{32}$")
READ_BLOCK = 1024 * 1024
SEND_BLOCK = 4 * 1024 * 1024
"""Block size of :meth:`LocalStorage.read_range`: large blocks mean few worker-thread hops and
event-loop writes per byte served (each block is one hop, one grant-recheck test, one write)."""


@runtime_checkable
class FileStorage(Protocol):
    """A store whose blobs are files on this machine: the registry can hand them to the
    kernel (``os.sendfile``) instead of reading them itself."""

    def open_blob(self, digest: str) -> BinaryIO: ...


class UploadWriter(Protocol):
    """Appends to one upload session's data; :meth:`close` makes the bytes durable."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class BlobStorage(Protocol):
    """What the registry needs from a blob store. Digests are bare lowercase hex."""

    def start_upload(self, upload_id: str) -> None: ...
    def open_writer(self, upload_id: str, offset: int) -> UploadWriter: ...
    def finalize(self, upload_id: str, digest: str, size: int) -> None:
        """Re-hash the upload's first ``size`` bytes; move it to the blob's final name if they
        match ``digest`` (or drop it if that blob exists). Mismatch: discard, raise."""
        ...

    def discard_upload(self, upload_id: str) -> None: ...
    def size(self, digest: str) -> int | None: ...
    def read_range(self, digest: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` inclusive, in blocks."""
        ...

    def delete(self, digest: str) -> None: ...
    def check(self) -> None:
        """Raise if the store is unusable (for /healthz)."""
        ...


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_P = ParamSpec("_P")
_T = TypeVar("_T")


def is_full(exc: OSError) -> bool:
    """Whether ``exc`` says the file system is full or over quota."""
    return exc.errno in FULL_ERRNOS


def _full_is_507(fn: Callable[_P, _T]) -> Callable[_P, _T]:
    """ENOSPC/EDQUOT from ``fn`` become :class:`InsufficientStorageError`."""

    @wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            if is_full(exc):
                raise InsufficientStorageError(
                    "the blob store is full", hint="retry later, or ask the operator"
                ) from exc
            raise

    return wrapper


def _check_digest(digest: str) -> str:
    if not _HEX_RE.match(digest):
        raise MalformedError("blob digest must be 64 lowercase hex characters")
    return digest


def _check_upload(upload_id: str) -> str:
    if not _UPLOAD_RE.match(upload_id):
        raise MalformedError("upload id must be 32 lowercase hex characters")
    return upload_id


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileWriter:
    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    @_full_is_507
    def write(self, data: bytes) -> None:
        self._f.write(data)

    @_full_is_507
    def close(self) -> None:
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
        finally:
            self._f.close()


class LocalStorage:
    """Blobs in ``<root>/sha256/<hex>``, uploads in progress in ``<root>/uploads/<id>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "sha256"
        self._uploads = root / "uploads"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._uploads.mkdir(parents=True, exist_ok=True)
        self._blobs_dir = str(self._blobs)

    def _blob_path(self, digest: str) -> Path:
        return self._blobs / _check_digest(digest)

    def _upload_path(self, upload_id: str) -> Path:
        return self._uploads / _check_upload(upload_id)

    @_full_is_507
    def start_upload(self, upload_id: str) -> None:
        self._upload_path(upload_id).touch(mode=0o600, exist_ok=False)

    def open_writer(self, upload_id: str, offset: int) -> UploadWriter:
        path = self._upload_path(upload_id)
        try:
            f = path.open("r+b")
        except FileNotFoundError as exc:
            raise NotFoundError("upload session has no data file") from exc
        f.seek(offset)
        f.truncate()
        return _FileWriter(f)

    @_full_is_507
    def finalize(self, upload_id: str, digest: str, size: int) -> None:
        path, final = self._upload_path(upload_id), self._blob_path(digest)
        h = hashlib.sha256()
        with path.open("rb") as f:
            remaining = size
            while remaining:
                block = f.read(min(READ_BLOCK, remaining))
                if not block:
                    break
                h.update(block)
                remaining -= len(block)
            f.seek(0, os.SEEK_END)
            actual_size = f.tell()
        if actual_size != size or h.hexdigest() != digest:
            path.unlink(missing_ok=True)
            raise DigestMismatchError(
                f"uploaded bytes hash to sha256:{h.hexdigest()}, not sha256:{digest}"
            )
        if final.exists():
            path.unlink(missing_ok=True)
            return
        os.chmod(path, BLOB_MODE)
        os.replace(path, final)
        _fsync_dir(self._blobs)

    def discard_upload(self, upload_id: str) -> None:
        self._upload_path(upload_id).unlink(missing_ok=True)

    def size(self, digest: str) -> int | None:
        try:
            return self._blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def _blob_file(self, digest: str) -> str:
        """The blob's path as a string (no ``Path`` objects on the read path)."""
        return os.path.join(self._blobs_dir, _check_digest(digest))

    def open_blob(self, digest: str) -> BinaryIO:
        """The blob's file, open for reading (what ``os.sendfile`` sends from)."""
        return open(self._blob_file(digest), "rb", buffering=0)  # the caller closes it

    def read_range(self, digest: str, start: int, end: int) -> Iterator[bytes]:
        # os.pread on a raw fd: one syscall and one copy per block, no buffered-reader layer.
        fd = os.open(self._blob_file(digest), os.O_RDONLY)
        try:
            pos, stop = start, end + 1
            while pos < stop:
                block = os.pread(fd, min(SEND_BLOCK, stop - pos), pos)
                if not block:
                    raise OSError(f"blob {digest[:16]}… ended early")
                pos += len(block)
                yield block
        finally:
            os.close(fd)

    def delete(self, digest: str) -> None:
        self._blob_path(digest).unlink(missing_ok=True)

    def check(self) -> None:
        probe = self._uploads / ".healthz"
        probe.write_bytes(b"ok")
        probe.unlink()


def open_storage(url: str) -> BlobStorage:
    if not url.startswith("file://"):
        raise MalformedError(f"unsupported storage URL {url!r}: use file:///ABSOLUTE/PATH")
    return LocalStorage(Path(url.removeprefix("file://")))
