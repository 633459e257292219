"""Identity files on disk: an Ed25519 private key as PKCS#8 PEM (mode 0600) plus a public JSON.

A private key file that others can read is refused, as ssh does: a key others may have copied
no longer identifies you.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from ostraca.protocol_spec import MalformedError, OstracaError, PublicKey, SigningKey


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
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.to_pem(passphrase.encode() if passphrase else None))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    info = {**(profile or {}), **PublicKey.from_verify_key(key.public).model_dump()}
    public_path(path).write_text(json.dumps(info, indent=2) + "\n")


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
