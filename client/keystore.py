"""Identity files on disk: an Ed25519 private key as PKCS#8 PEM (mode 0600) plus a public JSON.

A private key file that others can read is refused, as ssh does: a key others may have copied
no longer identifies you. :func:`rotate_identity` moves the identity file to a new key around
the call that tells the registry, keeping the old key file beside it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from ostraca.protocol_spec import MalformedError, OstracaError, PublicKey, SigningKey, utc_now

from .files import atomic_write

T = TypeVar("T")


class KeyFileError(OstracaError):
    code = "key_file"
    title = "Unusable key file"


def public_path(path: Path) -> Path:
    """Where the public half (and profile) of the key at ``path`` lives."""
    return path.with_suffix(".pub.json")


def save_signing_key(
    key: SigningKey,
    path: Path,
    *,
    passphrase: str | None = None,
    profile: dict[str, str] | None = None,
    overwrite: bool = False,
) -> None:
    """Write ``key`` as PEM with mode 0600, atomically; refuse to replace a key unless told.

    Beside it, ``<name>.pub.json`` holds the public key and ``profile`` (name, kind, affiliation).
    """
    if path.exists() and not overwrite:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a private key")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, _pem(key, passphrase), mode=0o600)
    info = {**(profile or {}), **PublicKey.from_verify_key(key.public).model_dump()}
    atomic_write(public_path(path), (json.dumps(info, indent=2) + "\n").encode())


def load_signing_key(path: Path, *, passphrase: str | None = None) -> SigningKey:
    """Read a PEM private key, refusing one that group or others can read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise KeyFileError(f"no key file at {path} (create one with `ostraca keygen`)") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path} is accessible by others (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}` if the key was not exposed, otherwise make a new key"
        )
    try:
        return SigningKey.from_pem(path.read_bytes(), passphrase.encode() if passphrase else None)
    except MalformedError as exc:
        raise KeyFileError(f"{path}: {exc.message}") from exc


def _pem(key: SigningKey, passphrase: str | None) -> bytes:
    return key.to_pem(passphrase.encode() if passphrase else None)


def rotated_name(path: Path, when: datetime) -> Path:
    """``identity.pem.rotated-2026-11-27`` (then ``…-2``, ``…-3``: never an existing file)."""
    base = path.with_name(f"{path.name}.rotated-{when:%Y-%m-%d}")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def former_identities(
    path: Path, *, current: str, passphrase: str | None = None
) -> list[SigningKey]:
    """The keys :func:`rotate_identity` kept beside the identity file at ``path``
    (``<path>.rotated-*``), newest file first, if that file's public half names ``current``
    (otherwise they are another identity's: none). One that does not load is left out (it can
    only have served to re-derive old encryption keys, ENCRYPTION.md 3.4)."""
    try:
        holder = json.loads(public_path(path).read_text()).get("keyid")
    except (OSError, ValueError, AttributeError):
        holder = None
    if holder != current:
        return []
    found = [
        p
        for p in path.parent.glob(f"{path.name}.rotated-*")
        if not p.name.endswith(".pub.json") and p.is_file()
    ]
    keys: list[SigningKey] = []
    for file in sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        with suppress(KeyFileError):
            keys.append(load_signing_key(file, passphrase=passphrase))
    return keys


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (never replacing a file) and write ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def rotate_identity(
    path: Path,
    new: SigningKey,
    submit: Callable[[], T],
    *,
    passphrase: str | None = None,
    now: datetime | None = None,
) -> tuple[T, Path]:
    """Move the identity file at ``path`` to ``new``, around ``submit()`` (the call that tells
    the registry, e.g. ``lambda: client.rotate_key(new, reason=...)``).

    The new key is on disk (a staged 0600 file beside ``path``) before ``submit`` runs, so
    whatever fails afterwards, the key the registry now trusts is never lost; if ``submit``
    raises, the staged file is removed and ``path`` is untouched. Afterwards the old key file is
    kept as ``<path>.rotated-<date>`` (mode 0600, with its ``.pub.json`` beside it), ``path``
    holds ``new`` (encrypted with ``passphrase`` when given) and its public JSON names the new
    key, keeping the profile. Returns ``submit``'s result and where the old key file went.
    """
    staged = path.with_name(f".{path.name}.rotating-{new.keyid[:16]}")
    staged.unlink(missing_ok=True)
    _write_private(staged, _pem(new, passphrase))
    try:
        result = submit()
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    backup = rotated_name(path, now or utc_now())
    _write_private(backup, path.read_bytes())
    os.replace(staged, path)
    pub = public_path(path)
    try:
        info = json.loads(pub.read_text())
    except (OSError, ValueError):
        info = {}
    if pub.exists():
        pub.replace(backup.with_name(backup.name + ".pub.json"))
    info.update(PublicKey.from_verify_key(new.public).model_dump())
    atomic_write(pub, (json.dumps(info, indent=2) + "\n").encode())
    return result, backup
