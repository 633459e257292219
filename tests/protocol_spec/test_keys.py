"""Ed25519 keys: ids, PEM with and without passphrase, and the client's key files on disk."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from ostraca.client.keystore import KeyFileError, load_signing_key, public_path, save_signing_key
from ostraca.protocol_spec import MalformedError, SignatureError, SigningKey, VerifyKey, key_id

SEED = bytes(range(32))


def test_key_id_is_sha256_of_raw_public_key() -> None:
    key = SigningKey.from_seed(SEED)
    assert key.keyid == hashlib.sha256(key.public.raw).hexdigest() == key_id(key.public.raw)
    assert VerifyKey.from_b64(key.public.b64) == key.public


def test_sign_and_verify() -> None:
    key = SigningKey.from_seed(SEED)
    sig = key.sign(b"message")
    key.public.verify(sig, b"message")
    with pytest.raises(SignatureError):
        key.public.verify(sig, b"messagE")


@pytest.mark.parametrize("passphrase", [None, b"correct horse battery staple"])
def test_pem_round_trip(passphrase: bytes | None) -> None:
    key = SigningKey.from_seed(SEED)
    pem = key.to_pem(passphrase)
    assert pem.startswith(
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----" if passphrase else b"-----BEGIN PRIVATE KEY-----"
    )
    assert SigningKey.from_pem(pem, passphrase).keyid == key.keyid


def test_pem_wrong_passphrase_is_malformed() -> None:
    pem = SigningKey.from_seed(SEED).to_pem(b"right")
    with pytest.raises(MalformedError):
        SigningKey.from_pem(pem, b"wrong")
    with pytest.raises(MalformedError):
        SigningKey.from_pem(pem)


def test_encrypted_pem_hides_the_seed() -> None:
    key = SigningKey.from_seed(SEED)
    assert SEED not in key.to_pem(b"pass")
    assert key.to_pem(b"pass") != key.to_pem(b"pass")  # fresh salt each time


def test_keystore_writes_mode_0600_and_reads_back(tmp_path: Path) -> None:
    key = SigningKey.from_seed(SEED)
    path = tmp_path / "keys" / "me.pem"
    save_signing_key(key, path, passphrase="pw", profile={"name": "Ada"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signing_key(path, passphrase="pw").keyid == key.keyid
    info = json.loads(public_path(path).read_text())
    assert info["keyid"] == key.keyid
    assert info["name"] == "Ada"
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_keystore_refuses_a_key_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "me.pem"
    save_signing_key(SigningKey.from_seed(SEED), path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError):
        load_signing_key(path)
    os.chmod(path, 0o640)
    with pytest.raises(KeyFileError):
        load_signing_key(path)
    os.chmod(path, 0o600)
    assert load_signing_key(path).keyid == SigningKey.from_seed(SEED).keyid


def test_keystore_wrong_passphrase_missing_file_and_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "me.pem"
    save_signing_key(SigningKey.from_seed(SEED), path, passphrase="pw")
    with pytest.raises(KeyFileError):
        load_signing_key(path, passphrase="nope")
    with pytest.raises(KeyFileError):
        load_signing_key(tmp_path / "absent.pem")
    with pytest.raises(KeyFileError):
        save_signing_key(SigningKey.from_seed(bytes(32)), path)
    save_signing_key(SigningKey.from_seed(bytes(32)), path, overwrite=True)
    assert load_signing_key(path).keyid == SigningKey.from_seed(bytes(32)).keyid
