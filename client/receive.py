"""Receiving one blob answer under the read limits (:class:`~.config.ReadLimits`): the stall
check after each receive (:class:`BodyReader`) and the deadline alarm that shuts the socket
(:func:`deadline_alarm`; one watchdog thread serves every request). Used by :mod:`.fetch`; the
check is monotonic-clock arithmetic, so it costs nothing measurable per receive.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator

from .config import ReadLimits

__all__ = ["BodyReader", "StalledError", "deadline_alarm"]


class StalledError(Exception):
    """An answer delivered less than ``min_rate_bytes_s`` over ``stall_window_s``."""


class _Watchdog:
    """One daemon thread that shuts the socket of each request still running at its deadline.

    A ``threading.Timer`` per request started a thread per request, and ``Thread.start`` waits
    for the new thread to run: under GIL contention (fetch threads receiving and hashing) that
    cost milliseconds on the consumer's critical path at every shard's access check (py-spy:
    ~15% of the main thread's wall-clock time in a cold read).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, http.client.HTTPConnection]] = []
        self._live: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, deadline: float, conn: http.client.HTTPConnection) -> int:
        with self._cond:
            token = next(self._ids)
            heapq.heappush(self._heap, (deadline, token, conn))
            self._live.add(token)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ostraca-deadline")
                self._thread.daemon = True
                self._thread.start()
            elif self._heap[0][1] == token:  # earlier than what the thread sleeps until
                self._cond.notify()
            return token

    def cancel(self, token: int) -> None:
        with self._cond:
            self._live.discard(token)
            if self._heap and self._heap[0][1] == token:  # the one the thread sleeps until
                self._cond.notify()
            elif len(self._heap) > 2 * len(self._live) + 64:  # drop cancelled entries
                self._heap = [e for e in self._heap if e[1] in self._live]
                heapq.heapify(self._heap)

    def _next_due(self) -> http.client.HTTPConnection:
        """Wait for the next live deadline to pass; return its connection."""
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token, conn = self._heap[0]
                wait = deadline - time.monotonic()
                if wait <= 0:
                    heapq.heappop(self._heap)
                    self._live.discard(token)
                    return conn
                self._cond.wait(wait)

    def _run(self) -> None:
        while True:
            _shut(self._next_due())


_WATCHDOG = _Watchdog()


def _reset_after_fork() -> None:  # a forked child (a DataLoader worker) has no watchdog thread
    global _WATCHDOG  # noqa: PLW0603
    _WATCHDOG = _Watchdog()


os.register_at_fork(after_in_child=_reset_after_fork)


@contextlib.contextmanager
def deadline_alarm(conn: http.client.HTTPConnection, deadline: float) -> Iterator[None]:
    """Shut ``conn``'s socket at ``deadline`` (``time.monotonic()``) if the block still runs,
    which ends any receive in it — the status line and headers included."""
    watchdog = _WATCHDOG
    token = watchdog.add(deadline, conn)
    try:
        yield
    finally:
        watchdog.cancel(token)


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
