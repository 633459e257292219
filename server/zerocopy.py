"""Zero-copy response bodies: the ASGI ``http.response.zerocopysend`` extension, offered on
uvicorn's httptools connections (the registry's server), where the kernel copies file bytes
straight from the page cache to the connection's socket with ``os.sendfile``.

uvicorn does not implement the extension itself, so :func:`offer` adds it to the one kind of
connection it can be done on safely: a plain-TCP httptools connection whose response has been
started with a ``Content-Length``. There, a ``zerocopysend`` message (``file``, ``offset``,
``count``, ``more_body``) is sent with ``os.sendfile`` after the status line and headers have
left the transport's buffer, waiting for the socket to be writable on the event loop, never
blocking it; uvicorn's own accounting of the response (its ``Content-Length`` check, its
completion, keep-alive) then goes on as if the bytes had been sent as body messages. Anything
else (TLS, h11, the test client, another server) is given the app's ``send`` untouched and no
extension, and the app sends the bytes itself. A client gone mid-body ends the response with
:class:`ClientDisconnect` (logged as 499, as nginx does).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import Message, Scope, Send
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

ZEROCOPY = "http.response.zerocopysend"


def offer(scope: Scope, send: Send) -> Send:
    """``send``, with ``zerocopysend`` added (and announced in ``scope["extensions"]``) when
    ``send`` is that of a plain-TCP uvicorn httptools connection; else ``send`` itself."""
    cycle = getattr(send, "__self__", None)
    if scope["type"] != "http" or type(cycle) is not RequestResponseCycle:
        return send
    transport: asyncio.Transport = cycle.transport
    if transport.get_extra_info("sslcontext") is not None or _socket_fd(transport) is None:
        return send  # TLS: the bytes must go through the transport's encryption
    scope.setdefault("extensions", {})[ZEROCOPY] = {}

    async def send_with_zerocopy(message: Message) -> None:
        if message["type"] == ZEROCOPY:
            await _zerocopy(cycle, send, message)
        else:
            await send(message)

    return send_with_zerocopy


def _socket_fd(transport: asyncio.Transport) -> int | None:
    sock = transport.get_extra_info("socket")
    return None if sock is None else int(sock.fileno())


async def _zerocopy(cycle: RequestResponseCycle, send: Send, message: Message) -> None:
    if cycle.disconnected or cycle.transport.is_closing():
        raise ClientDisconnect
    count: int = message["count"]
    if not cycle.response_started or cycle.response_complete or cycle.chunked_encoding:
        raise RuntimeError(f"{ZEROCOPY} needs a started response with a Content-Length")
    if count > cycle.expected_content_length:
        raise RuntimeError("Response content longer than Content-Length")
    if cycle.scope["method"] != "HEAD":
        try:
            await _sendfile(cycle.transport, message["file"].fileno(), message["offset"], count)
        except ConnectionError as exc:  # the peer reset or closed: uvicorn learns it next
            cycle.disconnected = True
            cycle.transport.close()
            raise ClientDisconnect from exc
    cycle.expected_content_length -= count
    if not message.get("more_body", False):
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _sendfile(transport: asyncio.Transport, file_fd: int, offset: int, count: int) -> None:
    """``count`` bytes of ``file_fd`` from ``offset`` onto the transport's socket, after what
    the transport still buffers (the headers, usually already on the wire)."""
    loop = asyncio.get_running_loop()
    await _flushed(transport)
    sock = _socket_fd(transport)
    if sock is None:
        raise ConnectionResetError("the connection has no socket any more")
    waiter: int | None = None  # a dup of the socket: the loop refuses the transport's own fd
    try:
        while count:
            try:
                sent = os.sendfile(sock, file_fd, offset, count)
            except BlockingIOError:
                waiter = os.dup(sock) if waiter is None else waiter
                await _writable(loop, waiter)
                if transport.is_closing():
                    raise ConnectionResetError("the connection was closed") from None
                continue
            if not sent:
                raise OSError(f"the file ended {count} bytes before the response")
            offset, count = offset + sent, count - sent
    finally:
        if waiter is not None:
            os.close(waiter)


async def _flushed(transport: asyncio.Transport) -> None:
    delay = 0.0005
    while transport.get_write_buffer_size():
        if transport.is_closing():
            raise ConnectionResetError("the connection was closed")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[Any] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)
