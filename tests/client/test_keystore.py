"""Identity files: atomic writes and the file side of a key rotation."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ostraca.client.files import atomic_write
from ostraca.client.keystore import (
    former_identities,
    load_signing_key,
    public_path,
    rotate_identity,
    save_signing_key,
)
from ostraca.protocol_spec import SigningKey

WHEN = datetime(2026, 11, 27, tzinfo=UTC)


def test_atomic_write_sets_the_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "token.json"
    atomic_write(target, b"old")
    atomic_write(target, b"secret", mode=0o600)
    assert target.read_bytes() == b"secret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["token.json"]


def test_rotate_identity_keeps_the_old_key_and_moves_in_the_new(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    old, new = SigningKey.generate(), SigningKey.generate()
    save_signing_key(old, path, profile={"name": "Ada"})
    (tmp_path / "identity.pem.rotated-2026-11-27").write_bytes(b"an earlier rotation")

    result, backup = rotate_identity(path, new, lambda: "submitted", now=WHEN)

    assert result == "submitted"
    assert backup.name == "identity.pem.rotated-2026-11-27-2"
    assert load_signing_key(path).keyid == new.keyid
    assert load_signing_key(backup).keyid == old.keyid
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    info = json.loads(public_path(path).read_text())
    assert (info["keyid"], info["name"]) == (new.keyid, "Ada")
    old_info = json.loads(backup.with_name(backup.name + ".pub.json").read_text())
    assert old_info["keyid"] == old.keyid


def test_rotate_identity_leaves_the_file_alone_when_the_registry_refuses(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    old = SigningKey.generate()
    save_signing_key(old, path)
    before = sorted(p.name for p in tmp_path.iterdir())

    def refused() -> None:
        raise RuntimeError("registry said no")

    with pytest.raises(RuntimeError, match="registry said no"):
        rotate_identity(path, SigningKey.generate(), refused, now=WHEN)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert load_signing_key(path).keyid == old.keyid


def test_former_identities_are_the_rotated_key_files_of_this_identity(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    first, second, third = (SigningKey.generate() for _ in range(3))
    save_signing_key(first, path)
    rotate_identity(path, second, lambda: None, now=WHEN)
    _, backup = rotate_identity(path, third, lambda: None, now=WHEN)
    # Newest file first; the public halves beside them are not keys.
    former = former_identities(path, current=third.keyid)
    assert [k.keyid for k in former] == [second.keyid, first.keyid]
    # The identity file holds another key than the caller's: those are not its former keys.
    assert former_identities(path, current=SigningKey.generate().keyid) == []
    # A key file others can read is left out (it no longer identifies anyone).
    backup.chmod(0o644)
    assert [k.keyid for k in former_identities(path, current=third.keyid)] == [first.keyid]
