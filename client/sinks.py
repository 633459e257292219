"""What sits between the fetcher and the Arrow decoder while a shard streams: sinks that feed
the chunk verifier (and stop when the consumer went away), and a file-like view that hands the
decoder only bytes whose chunk verified."""

from __future__ import annotations

import io
import mmap
import threading
from dataclasses import dataclass

from ostraca.protocol_spec import DigestMismatchError

from .encryption import ChunkOpener
from .fetch import ChunkVerifier


class ConsumerGoneError(Exception):
    """The consumer went away; a prefetch stops (its partial file is kept for resume)."""


@dataclass(slots=True)
class Opened:
    """A shard ready to decode: its bytes mapped, (while downloading) their verifier, and for an
    encrypted group whose chunks the verifier opens as they verify, their opener."""

    view: memoryview
    verifier: ChunkVerifier | None
    opener: ChunkOpener | None = None


class VerifiedReader(io.RawIOBase):
    """File-like view of a shard that hands the Arrow decoder only verified bytes (zero-copy
    slices of the mapped temp file, or of the opener's plaintext), blocking until the next chunk
    verified (and was opened)."""

    def __init__(self, opened: Opened) -> None:
        super().__init__()
        self._opener = opened.opener
        self._view = opened.view if self._opener is None else self._opener.plain
        self._verifier = opened.verifier
        self._pos = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> memoryview:
        end = len(self._view) if size < 0 else min(self._pos + size, len(self._view))
        at_end = end == len(self._view)
        if self._verifier is not None and (end > self._pos or at_end):
            # the end of the data waits for the whole blob (an empty plaintext still has a tag)
            if at_end:
                target = self._verifier.size
            else:
                target = end if self._opener is None else self._opener.sealed_end(end)
            self._verifier.wait_for(target)
        out = self._view[self._pos : end]
        self._pos = end
        return out


class CancellableSink:
    """The verifier as a :class:`~.fetch.BlobSink` that stops when the consumer went away."""

    def __init__(self, verifier: ChunkVerifier, cancel: threading.Event) -> None:
        self._verifier = verifier
        self._cancel = cancel

    def write(self, data: memoryview) -> None:
        if self._cancel.is_set():
            raise ConsumerGoneError
        self._verifier.write(data)


class BytesSink:
    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self._limit = limit

    def write(self, data: memoryview) -> None:
        if len(self.data) + len(data) > self._limit:
            raise DigestMismatchError("blob is longer than the manifest says")
        self.data += data


def map_view(fd: int, size: int) -> memoryview:
    mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    return memoryview(mm)
