"""Prometheus metrics and structured JSON request logs, as one pure ASGI middleware.

The middleware also turns an unexpected exception into a 500 problem+json without a stack
trace in the response (the trace goes to the log).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .zerocopy import ZEROCOPY

access_log = logging.getLogger("ostraca.server.access")
error_log = logging.getLogger("ostraca.server.error")


class Metrics:
    """One registry per app, so several apps (tests) can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ostraca_http_requests",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ostraca_http_request_seconds",
            "Time to the end of the response body",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
        )
        self.blob_bytes = Counter(
            "ostraca_blob_bytes_served", "Blob bytes sent to clients", registry=self.registry
        )
        self.zerocopy_bytes = Counter(
            "ostraca_blob_bytes_zerocopy",
            "Of the blob bytes served, those the kernel sent from the file (sendfile)",
            registry=self.registry,
        )
        self.decisions = Counter(
            "ostraca_access_decisions",
            "Blob access decisions by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.allowed, self.refused = (
            self.decisions.labels("allowed"),
            self.decisions.labels("refused"),
        )
        self._per_route: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count a finished request and its latency (each label set's children looked up once:
        ``labels()`` costs more than the increment on the registry's hot routes)."""
        key = (method, route, status)
        children = self._per_route.get(key)
        if children is None:
            children = self._per_route[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)


MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's multiprocess mode: every worker writes its values to files in this
folder, and a scrape answered by any worker sums them all."""


def exposition(metrics: Metrics) -> bytes:
    """The Prometheus text of ``/metrics``: this app's metrics, or under several workers
    (:data:`MULTIPROC_DIR` set) those of every worker process, aggregated."""
    if not os.environ.get(MULTIPROC_DIR):
        return bytes(generate_latest(metrics.registry))
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return bytes(generate_latest(registry))


@contextmanager
def multiprocess_metrics() -> Iterator[None]:
    """Set :data:`MULTIPROC_DIR` for the workers started inside the block: the operator's
    folder, emptied of an earlier run's files, or a temporary one removed afterwards. Must be
    entered before the workers import prometheus-client (uvicorn spawns fresh processes)."""
    given = os.environ.get(MULTIPROC_DIR)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        yield
        return
    with tempfile.TemporaryDirectory(prefix="ostraca-metrics-") as temporary:
        os.environ[MULTIPROC_DIR] = temporary
        try:
            yield
        finally:
            del os.environ[MULTIPROC_DIR]


CLIENT_CLOSED = 499
"""The status counted and logged for a request whose client disconnected before the answer."""

PROBLEM_500 = json.dumps(
    {
        "type": "urn:ostraca:error:error",
        "title": "Internal error",
        "status": 500,
        "detail": "the registry failed unexpectedly; the incident is in its log",
        "code": "error",
    }
).encode()


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "started": False, "bytes": 0}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            elif message["type"] == ZEROCOPY:
                state["bytes"] += message["count"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # The client went away mid-request (an upload cut off): not a server error, and
            # there is no one to answer. Counted as 499, as nginx does.
            state["status"] = CLIENT_CLOSED
        except Exception:
            error_log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if state["started"]:
                raise
            state["status"] = 500
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/problem+json"),
                        (b"content-length", str(len(PROBLEM_500)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": PROBLEM_500})
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "(unmatched)"
            method = scope["method"]
            self.metrics.observe_request(method, template, state["status"], elapsed)
            if access_log.isEnabledFor(logging.INFO):
                # The fields ride on the record (``extra``); JsonFormatter writes them once,
                # instead of dumping JSON here and parsing it back there for every request.
                fields = {
                    "event": "request",
                    "method": method,
                    "path": scope["path"],
                    "route": template,
                    "status": state["status"],
                    "bytes": state["bytes"],
                    "ms": round(elapsed * 1000, 3),
                    "client": (scope.get("client") or ("", 0))[0],
                }
                access_log.info(
                    "%s %s %s", method, scope["path"], state["status"], extra={"fields": fields}
                )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
            if record.exc_info:
                out["exc"] = self.formatException(record.exc_info)
            return json.dumps(out, separators=(",", ":"))
        message = record.getMessage()
        try:
            parsed = json.loads(message)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            out.update(parsed)
        else:
            out["message"] = message
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"))


def configure_logging(level: int = logging.INFO) -> None:
    """Route ``ostraca.server`` logs to stderr as JSON lines (called by the CLI, not by tests)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("ostraca.server")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
