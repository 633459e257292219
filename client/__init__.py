"""Ostraca's client SDK and CLI.

The names below are loaded on first use (PEP 562), so ``import ostraca.client`` stays light:
the publishing path (pyarrow's writers, the encryption) loads only where it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import RegistryClient as RegistryClient
    from .config import ClientConfig as ClientConfig
    from .config import load_config as load_config
    from .publishing import PublishResult as PublishResult
    from .publishing import publish as publish
    from .stream import open_dataset as open_dataset

_EXPORTS = {
    "RegistryClient": ".api",
    "ClientConfig": ".config",
    "load_config": ".config",
    "PublishResult": ".publishing",
    "publish": ".publishing",
    "open_dataset": ".stream",
}

__all__ = [
    "ClientConfig",
    "PublishResult",
    "RegistryClient",
    "load_config",
    "open_dataset",
    "publish",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
