"""Receiving one blob answer under the read limits (:class:`~.config.ReadLimits`): the stall
check after each receive (:class:`BodyReader`) and the deadline alarm that shuts the socket
(:func:`deadline_alarm`). Used by :mod:`.fetch`; the check is monotonic-clock arithmetic, so it
costs nothing measurable per receive.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator

from .config import ReadLimits

__all__ = ["BodyReader", "StalledError", "deadline_alarm"]


class StalledError(Exception):
    """An answer delivered less than ``min_rate_bytes_s`` over ``stall_window_s``."""


@contextlib.contextmanager
def deadline_alarm(conn: http.client.HTTPConnection, deadline: float) -> Iterator[None]:
    """Shut ``conn``'s socket at ``deadline`` (``time.monotonic()``) if the block still runs,
    which ends any receive in it — the status line and headers included."""
    alarm = threading.Timer(max(0.0, deadline - time.monotonic()), _shut, (conn,))
    alarm.daemon = True
    alarm.start()
    try:
        yield
    finally:
        alarm.cancel()


def _shut(conn: http.client.HTTPConnection) -> None:
    """End every receive on ``conn`` now (from the deadline timer's thread)."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


class BodyReader:
    """An answer's body, one receive per :meth:`readinto`, with the stall check after each.

    With a ``Content-Length`` (what the registry sends) it reads the connection's buffered
    reader directly, never past the declared length; otherwise (chunked) through
    :class:`http.client.HTTPResponse`.
    """

    def __init__(self, resp: http.client.HTTPResponse, limits: ReadLimits, url: str) -> None:
        self._resp = resp
        self._direct = not resp.chunked and resp.length is not None
        self.url = url
        self.left: int | None = resp.length
        """Body bytes the answer still holds (``None``: unknown)."""
        self._window = limits.stall_window_s
        self._least = limits.min_rate_bytes_s * limits.stall_window_s
        self._got = self._mark = 0
        self._check_at = time.monotonic() + self._window

    def readinto(self, view: memoryview) -> int:
        """Receive into ``view`` once; a body that ends early is ``IncompleteRead``."""
        if self._direct:
            assert self.left is not None
            n = self._resp.fp.readinto1(view[: self.left]) if self.left else 0
            self.left -= n
        else:
            n = self._resp.readinto1(view)
            self.left = self._resp.length
        if n == 0:
            raise http.client.IncompleteRead(b"", len(view))
        self._got += n
        now = time.monotonic()
        if now >= self._check_at:
            if self._got - self._mark < self._least:
                raise StalledError(
                    f"{self.url} stalled: {self._got - self._mark} bytes in the last "
                    f"{self._window:g} s (min_rate_bytes_s={self._least / self._window:g})"
                )
            self._mark, self._check_at = self._got, now + self._window
        return n
