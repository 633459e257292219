"""The HTTP transport of the API client: one httpx session, one place where httpx's exceptions
and the registry's error answers become :class:`~ostraca.protocol_spec.errors.OstracaError`,
and typed parsing of answers into the wire models of ``protocol_spec/wire.py``.

Every answer is read under :class:`~ostraca.client.config.ReadLimits`: its body is streamed and
refused with :class:`MalformedError` the moment it passes its cap (``max_manifest_bytes`` for a
manifest envelope, ``max_response_bytes`` for anything else), so no more than the cap plus one
received piece is ever held; and the whole call, from the first byte awaited to the last byte of
the body, must finish within ``request_deadline_s``, or it fails with
:class:`UnavailableError`. The deadline is enforced in the network stream itself (each socket
read waits at most the time left), so it holds for the status line and headers too: a registry
that sends one byte every few seconds cannot keep a call alive.

The transport is injectable (``httpx.ASGITransport(app)`` in tests, ``MockTransport``, a
proxy); an injected one gets the caps and a deadline checked between body pieces, not inside
its reads. Bulk blob bytes do not come through here but through :mod:`.fetch`.
"""

from __future__ import annotations

import io
import re
import ssl
import time
from collections.abc import Collection, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

import httpcore
import httpx
from pydantic import BaseModel, ValidationError

from ostraca.protocol_spec import MalformedError, split_dataset
from ostraca.protocol_spec.errors import UnavailableError

from .config import DEFAULT_LIMITS, ReadLimits
from .problems import error_from_problem

__all__ = ["DEFAULT_TIMEOUT", "Wire", "blob_path", "dataset_path", "parse"]

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)

M = TypeVar("M", bound=BaseModel)

_MANIFEST = re.compile(
    r"/v1/datasets/[^/]+/[^/]+/versions/[^/]+/manifest$|/v1/log/(entries|statements/[^/]+|proofs)$"
)
"""Answers that may hold a whole manifest envelope (the manifest itself, or log entries, which
are envelopes byte for byte): capped at ``max_manifest_bytes``, not ``max_response_bytes``."""


class _Deadline:
    """The time a call must be done by, set when its first byte is awaited (a request body
    being sent does not count: the write timeouts bound that)."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.at: float | None = None

    def left(self) -> float:
        """Seconds left; starts the clock on the first call."""
        now = time.monotonic()
        if self.at is None:
            self.at = now + self.budget
        return self.at - now


_DEADLINE: ContextVar[_Deadline | None] = ContextVar("ostraca_wire_deadline", default=None)


def _bounded(timeout: float | None) -> float | None:
    """``timeout`` cut to what is left of the current call's deadline."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline.left()
    if left <= 0:
        raise httpcore.ReadTimeout("the call's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, with each read bounded by the current call's deadline."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _deadline_transport(base_url: str) -> httpx.HTTPTransport:
    """httpx's own transport, over :class:`_DeadlineBackend` (its pool is the one thing
    replaced; the request and answer mapping stays httpx's). The TLS context (loading the CA
    bundle costs ~50 ms) is built up front only for an https registry; for a plain-http one
    httpcore builds its verifying default if a connection ever needs TLS."""
    # The transport's own context is never used (its pool is replaced): a bare one, still
    # verifying, not a second CA-bundle load.
    transport = httpx.HTTPTransport(verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    limits = httpx.Limits()
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context() if base_url.startswith("https:") else None,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_DeadlineBackend(),
    )
    return transport


class Wire:
    """An HTTP session with one registry (``base_url`` without a trailing slash)."""

    def __init__(
        self,
        base_url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        limits: ReadLimits = DEFAULT_LIMITS,
    ) -> None:
        self.base_url = base_url
        self.limits = limits
        self._http = httpx.Client(
            base_url=base_url,
            transport=transport or _deadline_transport(base_url),
            timeout=timeout,
            headers={"User-Agent": "ostraca-client/1"},
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str | int | None] | None = None,
        headers: Mapping[str, str] | None = None,
        dataset: str | None = None,
        accept: Collection[int] = (),
    ) -> httpx.Response:
        """Send one request; return the response on 2xx or a status in ``accept``, else raise
        the typed error the answer names (``dataset``: the dataset the call concerns, so that
        an access error carries the command that requests access)."""
        clean_params = {k: v for k, v in (params or {}).items() if v is not None}
        request = self._http.build_request(
            method, path, json=json_body, content=content, params=clean_params, headers=headers
        )
        deadline = _Deadline(self.limits.request_deadline_s)
        token = _DEADLINE.set(deadline)
        try:
            response = self._receive(request, deadline)
        except httpx.ConnectError as exc:
            raise UnavailableError(
                f"cannot reach the registry at {self.base_url}: {exc}",
                hint="is it running? start one with `ostraca server run`, or point "
                "--registry / OSTRACA_REGISTRY at the right URL",
            ) from exc
        except httpx.TimeoutException as exc:
            within = (
                f"within request_deadline_s={self.limits.request_deadline_s:g}"
                if deadline.at is not None and time.monotonic() >= deadline.at
                else f"in time ({type(exc).__name__})"
            )
            raise UnavailableError(
                f"the registry at {self.base_url} did not answer {method} {request.url.path} "
                f"{within}",
                hint="the registry or the network is slow or stuck; try again later",
            ) from exc
        except httpx.HTTPError as exc:
            raise UnavailableError(
                f"talking to the registry at {self.base_url} failed: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            _DEADLINE.reset(token)
        if response.is_success or response.status_code in accept:
            return response
        raise error_from_problem(
            response.status_code,
            response.content,
            content_type=response.headers.get("Content-Type", ""),
            request=f"{method} {response.request.url.path}",
            dataset=dataset,
        )

    def _receive(self, request: httpx.Request, deadline: _Deadline) -> httpx.Response:
        """Send ``request`` and read its answer's body under the cap and the deadline."""
        path = request.url.path
        cap, key = (
            (self.limits.max_manifest_bytes, "max_manifest_bytes")
            if _MANIFEST.search(path)
            else (self.limits.max_response_bytes, "max_response_bytes")
        )
        too_large = f"the registry's answer to {request.method} {path} is over {key}={cap} bytes"
        response = self._http.send(request, stream=True)
        try:
            declared = response.headers.get("Content-Length", "")
            # (A HEAD answer declares the length of a body it does not send.)
            if request.method != "HEAD" and declared.isdigit() and int(declared) > cap:
                raise MalformedError(f"{too_large} (it declares {int(declared)})")
            body = io.BytesIO()  # getvalue() hands over its buffer: the body is held once
            for piece in response.iter_bytes():
                body.write(piece)
                if body.tell() > cap:
                    raise MalformedError(too_large)
                if deadline.left() <= 0:  # for an injected transport (ours checks each read)
                    raise httpx.ReadTimeout("the call's deadline passed", request=request)
        finally:
            response.close()
        headers = [(k, v) for k, v in response.headers.multi_items() if k != "content-encoding"]
        return httpx.Response(
            response.status_code, headers=headers, content=body.getvalue(), request=request
        )


def parse(response: httpx.Response, model: type[M]) -> M:
    """The answer's body as ``model``; a body that does not fit is :class:`MalformedError`."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        raise MalformedError(
            f"the registry's answer to {response.request.method} {response.request.url.path} "
            f"is not a valid {model.__name__}: {where}: {first['msg']}"
        ) from exc


def blob_path(digest: str) -> str:
    """``/v1/blobs/sha256:<hex>`` (a digest with or without its ``sha256:`` prefix)."""
    hex_ = digest.removeprefix("sha256:")
    if len(hex_) != 64 or any(c not in "0123456789abcdef" for c in hex_):
        raise MalformedError(f"not a sha256 digest: {digest!r}")
    return f"/v1/blobs/sha256:{hex_}"


def dataset_path(dataset: str) -> str:
    """``/v1/datasets/<ns>/<name>`` (the name checked first)."""
    ns, name = split_dataset(dataset)
    return f"/v1/datasets/{ns}/{name}"
