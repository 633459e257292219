"""The HTTP transport of the API client: one httpx session, one place where httpx's exceptions
and the registry's error answers become :class:`~ostraca.protocol_spec.errors.OstracaError`,
and typed parsing of answers into the wire models of ``protocol_spec/wire.py``.

The transport is injectable (``httpx.ASGITransport(app)`` in tests, ``MockTransport``, a
proxy). Bulk blob bytes do not come through here but through :mod:`.fetch`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from ostraca.protocol_spec import MalformedError, split_dataset
from ostraca.protocol_spec.errors import UnavailableError

from .problems import error_from_problem

__all__ = ["DEFAULT_TIMEOUT", "Wire", "blob_path", "dataset_path", "parse"]

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)

M = TypeVar("M", bound=BaseModel)


class Wire:
    """An HTTP session with one registry (``base_url`` without a trailing slash)."""

    def __init__(
        self,
        base_url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url,
            transport=transport,
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
        try:
            response = self._http.request(
                method, path, json=json_body, content=content, params=clean_params, headers=headers
            )
        except httpx.ConnectError as exc:
            raise UnavailableError(
                f"cannot reach the registry at {self.base_url}: {exc}",
                hint="is it running? start one with `ostraca server run`, or point "
                "--registry / OSTRACA_REGISTRY at the right URL",
            ) from exc
        except httpx.TimeoutException as exc:
            raise UnavailableError(
                f"the registry at {self.base_url} did not answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise UnavailableError(
                f"talking to the registry at {self.base_url} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if response.is_success or response.status_code in accept:
            return response
        raise error_from_problem(
            response.status_code,
            response.content,
            content_type=response.headers.get("Content-Type", ""),
            request=f"{method} {response.request.url.path}",
            dataset=dataset,
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
