"""S3-compatible blob storage (boto3): the :class:`~ostraca.server.storage.BlobStorage` contract
on a bucket, for ``s3://BUCKET/PREFIX``.

Layout under the prefix::

    sha256/<hex>                      a blob, only ever written complete and verified
    uploads/<id>/data                 the multipart upload of a session (parts of ``part_size``)
    uploads/<id>/tail/<start:020d>    the session's bytes past its last full part

An upload arrives in pieces (``PATCH`` after ``PATCH``, possibly on different workers). Every
full ``part_size`` of bytes becomes one part of a multipart upload at ``uploads/<id>/data``; the
rest is kept as a small ``tail`` object named by where it starts, so a writer opened at any
offset the registry recorded can pick up the bytes before it (a failed writer may have written
further: parts are overwritten and tails are named by their start, so what lies before the
recorded offset is never lost). :meth:`S3Storage.finalize` uploads the tail as the last part,
completes the multipart upload (still under ``uploads/``), checks its length and SHA-256 — hashed
while the bytes were received when one process saw them all, read back otherwise — and only then
copies it, server-side, to ``sha256/<hex>``. A mismatch or :meth:`S3Storage.discard_upload`
aborts the multipart upload and deletes everything staged: an interrupted upload is never
visible under a final key.

Pre-signed reads (:meth:`S3Storage.presign_read`) are SigV4 query-signed GETs of one object that
expire after the TTL. The ``Range`` header is one of the signed headers: a backend that checks
SigV4 signed headers (AWS S3, MinIO, Ceph RGW) refuses the URL with any other range, or with
none; one that does not (moto) still limits it to one object until it expires.

botocore's exceptions are translated here, once (:func:`storage_errors`): an unreachable store,
refused credentials or a failing server are :class:`UnavailableError` (503, ``unavailable``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    NoCredentialsError,
)

from ostraca.protocol_spec.errors import (
    DigestMismatchError,
    MalformedError,
    NotFoundError,
    UnavailableError,
)

from .storage import READ_BLOCK, SEND_BLOCK, UploadWriter, _check_digest, _check_upload

MIB = 1024 * 1024
PART_SIZE = 8 * MIB
"""Default multipart part size: one client ``PATCH`` piece (8 MiB) is one part."""
MIN_PART_SIZE = 5 * MIB
"""S3's smallest part but the last."""
MAX_PARTS = 10_000
"""S3's most parts in one multipart upload: a blob holds at most ``part_size * MAX_PARTS``."""
_MISSING = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchUpload"})
_REFUSED = frozenset(
    {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"}
)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix/")`` (the prefix may be empty)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise MalformedError(f"storage URL {url!r} is not s3://BUCKET[/PREFIX]")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def _is_missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in _MISSING


@contextmanager
def storage_errors(bucket: str) -> Iterator[None]:
    """botocore's failures as ours: anything that says the store cannot serve is a 503."""
    try:
        yield
    except NoCredentialsError as exc:
        raise UnavailableError(
            f"no credentials for the blob store s3://{bucket}",
            hint="set OSTRACA_S3_ACCESS_KEY_ID and OSTRACA_S3_SECRET_ACCESS_KEY",
        ) from exc
    except BotoCoreError as exc:
        raise UnavailableError(
            f"the blob store s3://{bucket} is unreachable: {type(exc).__name__}",
            hint="retry later, or check OSTRACA_S3_ENDPOINT_URL",
        ) from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code in _REFUSED:
            raise UnavailableError(
                f"the blob store s3://{bucket} refused the registry's credentials ({code})",
                hint="check OSTRACA_S3_ACCESS_KEY_ID and OSTRACA_S3_SECRET_ACCESS_KEY",
            ) from exc
        if code == "NoSuchBucket" or status >= 500:
            raise UnavailableError(
                f"the blob store s3://{bucket} failed: {code or status}", hint="retry later"
            ) from exc
        raise


@dataclass(slots=True)
class _Hashing:
    """A session's SHA-256 over its first ``offset`` bytes, as this process received them."""

    offset: int
    sha256: Any


class _PartWriter:
    """Appends to an upload: full parts go to the multipart upload, the rest to a tail."""

    def __init__(
        self, store: S3Storage, upload_id: str, base: int, buffer: bytes, hashing: _Hashing | None
    ) -> None:
        self._store, self._id = store, upload_id
        self._base = base
        self._buffer = bytearray(buffer)
        self._hashing = hashing

    def write(self, data: bytes) -> None:
        if self._hashing is not None:
            self._hashing.sha256.update(data)
            self._hashing.offset += len(data)
        self._buffer += data
        size = self._store.part_size
        while len(self._buffer) >= size:
            self._store.upload_part(self._id, self._base // size + 1, bytes(self._buffer[:size]))
            del self._buffer[:size]
            self._base += size

    def close(self) -> None:
        self._store.put_tail(self._id, self._base, bytes(self._buffer))
        if self._hashing is not None:
            self._store.keep_hashing(self._id, self._hashing)


class S3Storage:
    """Blobs in an S3 bucket (see the module docstring). Opening contacts nothing; call
    :meth:`check` to find out whether the bucket is reachable with these credentials."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_size: int = PART_SIZE,
        timeout_seconds: float = 10.0,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise MalformedError(f"S3 part size must be at least {MIN_PART_SIZE} bytes")
        self.bucket, self.prefix = parse_s3_url(url)
        self.part_size = part_size
        config = Config(
            signature_version="s3v4",
            connect_timeout=timeout_seconds,
            read_timeout=timeout_seconds,
            retries={"mode": "standard", "max_attempts": 3},
        )
        self._s3: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region or None,
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            config=config,
        )
        self._hashing: dict[str, _Hashing] = {}
        self._lock = threading.Lock()

    # --- keys -------------------------------------------------------------------------------

    def blob_key(self, digest: str) -> str:
        return f"{self.prefix}sha256/{_check_digest(digest)}"

    def _staging(self, upload_id: str) -> str:
        return f"{self.prefix}uploads/{_check_upload(upload_id)}/"

    def _data_key(self, upload_id: str) -> str:
        return self._staging(upload_id) + "data"

    def _tail_key(self, upload_id: str, start: int) -> str:
        return f"{self._staging(upload_id)}tail/{start:020d}"

    # --- uploads ----------------------------------------------------------------------------

    def start_upload(self, upload_id: str) -> None:
        self.put_tail(upload_id, 0, b"")

    def open_writer(self, upload_id: str, offset: int) -> UploadWriter:
        base = offset - offset % self.part_size
        tail = self._get_tail(upload_id, base)
        if tail is None or len(tail) < offset - base:
            raise NotFoundError("upload session has no data up to its offset")
        with self._lock:
            hashing = self._hashing.pop(upload_id, None)
        if offset == 0:
            hashing = _Hashing(0, hashlib.sha256())
        elif hashing is not None and hashing.offset != offset:
            hashing = None  # another writer went further: finalize reads the bytes back
        return _PartWriter(self, upload_id, base, tail[: offset - base], hashing)

    def keep_hashing(self, upload_id: str, hashing: _Hashing) -> None:
        with self._lock:
            self._hashing[upload_id] = hashing

    def put_tail(self, upload_id: str, start: int, data: bytes) -> None:
        with storage_errors(self.bucket):
            self._s3.put_object(Bucket=self.bucket, Key=self._tail_key(upload_id, start), Body=data)

    def _get_tail(self, upload_id: str, start: int) -> bytes | None:
        key = self._tail_key(upload_id, start)
        with storage_errors(self.bucket):
            try:
                return cast(bytes, self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
            except ClientError as exc:
                if _is_missing(exc):
                    return None
                raise

    def _multipart_ids(self, upload_id: str) -> list[str]:
        """The multipart uploads of the session's data key, oldest first (concurrent first
        writers may each have started one: everyone then uses the oldest)."""
        key = self._data_key(upload_id)
        with storage_errors(self.bucket):
            listed = self._s3.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        uploads = [u for u in listed.get("Uploads", []) if u["Key"] == key]
        return [u["UploadId"] for u in sorted(uploads, key=lambda u: u["Initiated"])]

    def upload_part(self, upload_id: str, number: int, data: bytes) -> None:
        if number > MAX_PARTS:
            raise MalformedError(
                f"a blob on this store holds at most {MAX_PARTS * self.part_size} bytes"
            )
        key = self._data_key(upload_id)
        ids = self._multipart_ids(upload_id)
        with storage_errors(self.bucket):
            if not ids:
                created = self._s3.create_multipart_upload(Bucket=self.bucket, Key=key)
                ids = [created["UploadId"]]
            self._s3.upload_part(
                Bucket=self.bucket, Key=key, UploadId=ids[0], PartNumber=number, Body=data
            )

    def finalize(self, upload_id: str, digest: str, size: int) -> None:
        final = self.blob_key(digest)
        with self._lock:
            hashing = self._hashing.pop(upload_id, None)
        try:
            staged = self._complete(upload_id, size)
            self._verify(staged, digest, size, hashing)
        except DigestMismatchError:
            self.discard_upload(upload_id)
            raise
        if self.size(digest) is None:
            with storage_errors(self.bucket):
                self._s3.copy({"Bucket": self.bucket, "Key": staged}, self.bucket, final)
        self.discard_upload(upload_id)

    def _complete(self, upload_id: str, size: int) -> str:
        """Assemble the session's first ``size`` bytes into one staged object; its key."""
        parts, rest = divmod(size, self.part_size)
        base = parts * self.part_size
        tail = self._get_tail(upload_id, base)
        if tail is None or len(tail) < rest:
            raise DigestMismatchError(f"the upload holds fewer than its {size} bytes")
        if parts == 0:
            return self._tail_key(upload_id, 0)
        if rest:
            self.upload_part(upload_id, parts + 1, tail[:rest])
        key, ids = self._data_key(upload_id), self._multipart_ids(upload_id)
        if not ids:  # completed by an earlier finalize that failed afterwards, or never begun
            if self._length(key) is None:
                raise DigestMismatchError(f"the upload holds fewer than its {size} bytes")
            return key
        with storage_errors(self.bucket):
            pages = self._s3.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=key, UploadId=ids[0]
            )
            etags = {p["PartNumber"]: p["ETag"] for page in pages for p in page.get("Parts", [])}
            wanted = range(1, parts + (2 if rest else 1))
            if any(n not in etags for n in wanted):
                raise DigestMismatchError(f"the upload holds fewer than its {size} bytes")
            self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=ids[0],
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in wanted]},
            )
        return key

    def _verify(self, key: str, digest: str, size: int, hashing: _Hashing | None) -> None:
        """Raise unless the staged object holds exactly ``size`` bytes hashing to ``digest``
        (hashed while they were received, or read back)."""
        length = self._length(key)
        if length != size:
            raise DigestMismatchError(f"the upload holds {length} bytes, not {size}")
        if hashing is not None and hashing.offset == size:
            actual = str(hashing.sha256.hexdigest())
        else:
            h = hashlib.sha256()
            for block in self._read(key, 0, size - 1, READ_BLOCK) if size else ():
                h.update(block)
            actual = h.hexdigest()
        if actual != digest:
            raise DigestMismatchError(
                f"uploaded bytes hash to sha256:{actual}, not sha256:{digest}"
            )

    def discard_upload(self, upload_id: str) -> None:
        """Abort the session's multipart uploads and delete everything it staged."""
        with self._lock:
            self._hashing.pop(upload_id, None)
        key, staging = self._data_key(upload_id), self._staging(upload_id)
        with storage_errors(self.bucket):
            for multipart in self._multipart_ids(upload_id):
                try:
                    self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=multipart)
                except ClientError as exc:
                    if not _is_missing(exc):
                        raise
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=staging
            )
            for page in pages:
                objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if objects:
                    self._s3.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
                    )

    # --- blobs ------------------------------------------------------------------------------

    def size(self, digest: str) -> int | None:
        return self._length(self.blob_key(digest))

    def _length(self, key: str) -> int | None:
        with storage_errors(self.bucket):
            try:
                head = self._s3.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _is_missing(exc):
                    return None
                raise
        return int(head["ContentLength"])

    def read_range(self, digest: str, start: int, end: int) -> Iterator[bytes]:
        return self._read(self.blob_key(digest), start, end, SEND_BLOCK)

    def _read(self, key: str, start: int, end: int, block: int) -> Iterator[bytes]:
        """Bytes ``start``..``end`` of ``key``; a body shorter or longer than asked raises."""
        want = end - start + 1
        with storage_errors(self.bucket):
            try:
                got = self._s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}")
            except ClientError as exc:
                if _is_missing(exc):
                    raise NotFoundError(f"{key} is not in the blob store") from exc
                raise
            body, seen = got["Body"], 0
            try:
                for chunk in body.iter_chunks(block):
                    seen += len(chunk)
                    if seen > want:
                        break
                    yield chunk
            finally:
                body.close()
        if seen != want:
            raise UnavailableError(f"the blob store sent {seen} bytes of {key}, not {want}")

    def delete(self, digest: str) -> None:
        with storage_errors(self.bucket):
            self._s3.delete_object(Bucket=self.bucket, Key=self.blob_key(digest))

    def check(self) -> None:
        """Raise :class:`UnavailableError` unless the bucket answers with these credentials
        (the registry calls it at start: a wrong setting is a one-line error, not a 503 later)."""
        with storage_errors(self.bucket):
            try:
                self._s3.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _is_missing(exc):
                    raise UnavailableError(
                        f"the blob store has no bucket {self.bucket!r}",
                        hint="create it, or correct OSTRACA_STORAGE_URL",
                    ) from exc
                raise

    def presign_read(self, digest: str, start: int, end: int, ttl_seconds: int) -> str:
        """A GET URL for bytes ``start``..``end`` of the blob that expires in ``ttl_seconds``
        (the client must send ``Range: bytes=start-end``; see the module docstring)."""
        with storage_errors(self.bucket):
            return cast(
                str,
                self._s3.generate_presigned_url(
                    "get_object",
                    Params={
                        "Bucket": self.bucket,
                        "Key": self.blob_key(digest),
                        "Range": f"bytes={start}-{end}",
                    },
                    ExpiresIn=ttl_seconds,
                ),
            )
