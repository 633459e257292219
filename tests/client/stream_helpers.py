"""Helpers of the streaming tests: granting access, a loopback TCP proxy that misbehaves on
purpose (drops a connection once, or rewrites requests like a stale mirror), IPC offsets."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from ostraca.client.api import RegistryClient
from ostraca.client.config import ClientConfig
from ostraca.protocol_spec import SigningKey, utc_now
from ostraca.protocol_spec.wire import GrantItem


class IdentityLike(Protocol):
    """What the tests use of conftest's ``Identity`` (not importable: no test package)."""

    home: Path
    config: ClientConfig
    key: SigningKey
    client: RegistryClient


class RegistryLike(Protocol):
    url: str
    data_dir: Path


def grant_access(
    publisher_client: RegistryClient,
    researcher_client: RegistryClient,
    dataset: str,
    **approve_kwargs: object,
) -> GrantItem:
    """The researcher asks for ``dataset``; the publisher approves (90 days unless told)."""
    request = researcher_client.request_access(dataset, purpose="testing verified streaming")
    kwargs: dict[str, object] = {"expires": utc_now() + timedelta(days=90)}
    kwargs.update(approve_kwargs)
    return publisher_client.approve(request.request_id, **kwargs)  # type: ignore[arg-type]


def blob_file(data_dir: Path, digest: str) -> Path:
    """Where the registry's local storage keeps blob ``digest``."""
    found = [p for p in data_dir.rglob(digest) if p.is_file()]
    assert len(found) == 1, found
    return found[0]


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def batch_end_offsets(shard: bytes) -> list[int]:
    """Byte offset at which each record batch message of an IPC stream ends (in order)."""
    reader = pa.BufferReader(shard)
    ends: list[int] = []
    while True:
        try:
            message = pa.ipc.read_message(reader)
        except (EOFError, pa.ArrowInvalid, OSError):
            break
        if message.type == "record batch":
            ends.append(reader.tell())
    return ends


def with_registry(config: ClientConfig, url: str, **changes: object) -> ClientConfig:
    return replace(config, registry=url, **changes)  # type: ignore[arg-type]


class Proxy:
    """A loopback TCP proxy in front of the registry.

    ``drop_after``: the first connection that carries more than this many response bytes is cut
    (both directions closed) right there, once. ``rewrite``: applied to each chunk of request
    bytes (e.g. to make ``latest`` mean an old version). ``requests`` records request heads.
    """

    def __init__(
        self,
        upstream: str,
        *,
        drop_after: int | None = None,
        rewrite: Callable[[bytes], bytes] | None = None,
    ) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self._upstream = (host, int(port))
        self._drop_after = drop_after
        self._rewrite = rewrite
        self.dropped = 0
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                if self._rewrite is not None:
                    data = self._rewrite(data)
                if data[:8].split(b" ")[0] in (b"GET", b"POST", b"HEAD", b"PUT", b"PATCH"):
                    with self._lock:
                        self.requests.append(data.split(b"\r\n\r\n")[0])
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(upstream)

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        sent = 0
        try:
            while data := upstream.recv(65536):
                with self._lock:
                    cut = (
                        self._drop_after is not None
                        and self.dropped == 0
                        and sent + len(data) > self._drop_after
                    )
                    if cut:
                        self.dropped += 1
                if cut:
                    assert self._drop_after is not None
                    client.sendall(data[: self._drop_after - sent])
                    break
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
