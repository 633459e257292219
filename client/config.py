"""Client configuration: where the registry is, which identity to use, where to cache.

Precedence, lowest to highest: built-in defaults, ``$OSTRACA_HOME/config.json``, environment
variables (``OSTRACA_REGISTRY``, ``OSTRACA_IDENTITY``, ``OSTRACA_PASSPHRASE_ENV``,
``OSTRACA_CACHE_DIR``, ``OSTRACA_CACHE_BYTES`` and the read limits below as ``OSTRACA_<KEY>``,
e.g. ``OSTRACA_FETCH_DEADLINE_S``), then explicit overrides (CLI flags).
``OSTRACA_HOME`` (default ``~/.ostraca``) holds the identity, the token cache, pinned publisher
keys, the staging area of publishes and the shard cache.

Read limits (:class:`ReadLimits`, from the keys of the same names) bound everything the client
reads from a registry, so that a broken or hostile one cannot exhaust or hang it:
``max_manifest_bytes`` (a manifest envelope) and ``max_response_bytes`` (every other answer)
are checked while the body is read; ``request_deadline_s`` bounds a whole API call (headers and
body); a blob fetch has ``fetch_deadline_s`` overall and fails as stalled when fewer than
``min_rate_bytes_s`` bytes per second arrived over ``stall_window_s`` seconds.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ostraca.protocol_spec import MalformedError

from .files import atomic_write

DEFAULT_REGISTRY = "http://127.0.0.1:8000"
DEFAULT_CACHE_BYTES = 20 * 1024**3
LIMIT_KEYS = (
    "max_manifest_bytes",
    "max_response_bytes",
    "request_deadline_s",
    "fetch_deadline_s",
    "min_rate_bytes_s",
    "stall_window_s",
)
"""The read limits' keys (fields of :class:`ReadLimits`)."""
CONFIG_KEYS = ("registry", "identity", "passphrase_env", "cache_dir", "cache_bytes", *LIMIT_KEYS)
"""The keys ``config.json`` and ``ostraca config set`` accept."""

_ENV = {key: f"OSTRACA_{key.upper()}" for key in CONFIG_KEYS}
_SIZES = ("cache_bytes", "max_manifest_bytes", "max_response_bytes", "min_rate_bytes_s")
_SECONDS = ("request_deadline_s", "fetch_deadline_s", "stall_window_s")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5}


def ostraca_home() -> Path:
    """Where identities and configuration live: ``$OSTRACA_HOME`` or ``~/.ostraca``."""
    return Path(os.environ.get("OSTRACA_HOME") or Path.home() / ".ostraca").expanduser()


def parse_size(text: str | int) -> int:
    """``"64MB"`` → 64_000_000, ``"64MiB"`` → 67_108_864, ``"20G"`` → 20·10⁹, ``123`` → 123."""
    if isinstance(text, int):
        if text < 0:
            raise MalformedError(f"size must not be negative, got {text}")
        return text
    m = _SIZE_RE.match(text)
    if not m:
        raise MalformedError(f"not a size: {text!r} (examples: 64MiB, 64MB, 2G, 1048576)")
    number, unit = m.group(1), (m.group(2) or "").lower()
    base = 1024 if "i" in unit else 1000
    prefix = unit.rstrip("ib")
    factor = base ** list(_UNITS).index(prefix) if prefix else 1
    return int(float(number) * factor)


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """Caps and deadlines on what the client reads from a registry (see the module's doc)."""

    max_manifest_bytes: int = 512 * 1024**2
    """A manifest envelope (the registry's own default cap on what it accepts)."""
    max_response_bytes: int = 16 * 1024**2
    """Every other answer of the API: JSON, problem+json, small blobs such as chunk lists."""
    request_deadline_s: float = 120.0
    """One API call, from sending it to the body's last byte."""
    fetch_deadline_s: float = 3600.0
    """One blob download, resumes included."""
    min_rate_bytes_s: int = 16 * 1024
    """A download slower than this over ``stall_window_s`` is stalled (and resumed)."""
    stall_window_s: float = 30.0

    def __post_init__(self) -> None:
        for key in LIMIT_KEYS:
            if not getattr(self, key) > 0:
                raise MalformedError(f"{key} must be positive, got {getattr(self, key)}")


DEFAULT_LIMITS = ReadLimits()


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything a client needs to know about its surroundings."""

    home: Path
    registry: str = DEFAULT_REGISTRY
    identity: Path | None = None
    """Private key file; ``None`` means ``home / "identity.pem"``."""
    passphrase_env: str | None = None
    """Name of the environment variable holding the key's passphrase, if it is encrypted."""
    cache_dir: Path | None = None
    """Shard cache; ``None`` means ``home / "cache"``."""
    cache_bytes: int = DEFAULT_CACHE_BYTES
    max_manifest_bytes: int = DEFAULT_LIMITS.max_manifest_bytes
    max_response_bytes: int = DEFAULT_LIMITS.max_response_bytes
    request_deadline_s: float = DEFAULT_LIMITS.request_deadline_s
    fetch_deadline_s: float = DEFAULT_LIMITS.fetch_deadline_s
    min_rate_bytes_s: int = DEFAULT_LIMITS.min_rate_bytes_s
    stall_window_s: float = DEFAULT_LIMITS.stall_window_s

    def __post_init__(self) -> None:
        object.__setattr__(self, "registry", self.registry.rstrip("/"))
        if self.identity is None:
            object.__setattr__(self, "identity", self.home / "identity.pem")
        if self.cache_dir is None:
            object.__setattr__(self, "cache_dir", self.home / "cache")
        if not self.registry.startswith(("http://", "https://")):
            raise MalformedError(
                f"registry URL must start with http:// or https://, got {self.registry!r}"
            )
        if self.cache_bytes < 0:
            raise MalformedError("cache_bytes must not be negative")
        _ = self.limits  # refuse bad limits now, not at the first read

    @property
    def limits(self) -> ReadLimits:
        """The caps and deadlines of every read from the registry."""
        return ReadLimits(**{key: getattr(self, key) for key in LIMIT_KEYS})

    @property
    def identity_path(self) -> Path:
        assert self.identity is not None  # set in __post_init__
        return self.identity

    @property
    def cache_path(self) -> Path:
        assert self.cache_dir is not None  # set in __post_init__
        return self.cache_dir

    @property
    def passphrase(self) -> str | None:
        """The key passphrase read from ``passphrase_env`` (``None`` when not configured)."""
        if self.passphrase_env is None:
            return None
        value = os.environ.get(self.passphrase_env)
        if not value:
            raise MalformedError(
                f"environment variable {self.passphrase_env} (the key passphrase) is empty or unset"
            )
        return value

    @property
    def config_file(self) -> Path:
        return self.home / "config.json"

    @property
    def token_file(self) -> Path:
        return self.home / "token.json"

    @property
    def staging_dir(self) -> Path:
        return self.home / "staging"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def _coerce(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in _SIZES:
        return parse_size(value if isinstance(value, int) else str(value))
    if key in _SECONDS:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise MalformedError(f"{key} must be a number of seconds, got {value!r}") from None
    if key in ("identity", "cache_dir"):
        return Path(str(value)).expanduser()
    if key not in CONFIG_KEYS:
        raise MalformedError(f"unknown configuration key {key!r} (known: {', '.join(CONFIG_KEYS)})")
    return str(value)


def read_config_file(path: Path) -> dict[str, Any]:
    """The raw settings stored in ``config.json`` (empty when the file does not exist)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise MalformedError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedError(f"{path} must hold a JSON object")
    unknown = set(data) - set(CONFIG_KEYS)
    if unknown:
        raise MalformedError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    return data


def load_config(
    *,
    path: Path | None = None,
    home: Path | None = None,
    registry: str | None = None,
    identity: Path | None = None,
    passphrase_env: str | None = None,
    cache_dir: Path | None = None,
    cache_bytes: int | str | None = None,
    **limits: float | str | None,
) -> ClientConfig:
    """Defaults < ``config.json`` (``path``, default ``home/config.json``) < env < arguments
    (``limits``: any of :data:`LIMIT_KEYS`)."""
    home = (home or ostraca_home()).expanduser()
    values: dict[str, Any] = {}
    for key, value in read_config_file(path or home / "config.json").items():
        values[key] = _coerce(key, value)
    for key, var in _ENV.items():
        if os.environ.get(var):
            values[key] = _coerce(key, os.environ[var])
    overrides = {
        "registry": registry,
        "identity": identity,
        "passphrase_env": passphrase_env,
        "cache_dir": cache_dir,
        "cache_bytes": cache_bytes,
        **limits,
    }
    for key, value in overrides.items():
        if value is not None:
            values[key] = _coerce(key, value)
    return ClientConfig(home=home, **values)


def set_config_value(key: str, value: str, *, home: Path | None = None) -> Path:
    """Store ``key = value`` in ``config.json`` (validated first); returns the file's path."""
    home = (home or ostraca_home()).expanduser()
    path = home / "config.json"
    data = read_config_file(path)
    coerced = _coerce(key, value)
    data[key] = str(coerced) if isinstance(coerced, Path) else coerced
    ClientConfig(home=home, **{k: _coerce(k, v) for k, v in data.items()})  # refuse bad values
    home.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    return path
