"""``vectors/encryption.json`` agrees with the implementation: the generator reproduces every
deterministic field byte for byte, and ostraca opens the randomized key grants it holds."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ostraca.protocol_spec import Envelope, SigningKey, VerifyKey
from ostraca.protocol_spec.crypto import DataKey, GroupContext, ShardCipher
from ostraca.protocol_spec.enckeys import (
    EncryptionPrivateKey,
    open_key_grant,
    verify_encryption_key,
    verify_key_grant,
)
from ostraca.protocol_spec.errors import DecryptionError

ROOT = Path(__file__).parents[2]
COMMITTED = json.loads((ROOT / "protocol_spec" / "vectors" / "encryption.json").read_text())
KEYS = {k["identity_keyid"]: k for k in COMMITTED["keys"]}
NOW = datetime(2026, 6, 2, tzinfo=UTC)


def randomized(content: dict[str, Any]) -> dict[str, Any]:
    """The file without the HPKE outputs (the key-grant envelopes and their PAE digests)."""
    out = dict(content)
    out["statements"] = [
        {k: v for k, v in s.items() if k not in {"envelope", "pae_sha256"}}
        if s["name"].startswith("key-grant")
        else s
        for s in content["statements"]
    ]
    return out


def test_generator_reproduces_the_deterministic_fields(tmp_path: Path) -> None:
    out = tmp_path / "encryption.json"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_encryption_vectors.py"), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert randomized(json.loads(out.read_text())) == randomized(COMMITTED)


def test_ostraca_opens_the_committed_shards() -> None:
    for v in COMMITTED["shards"]:
        if "sealed_hex" not in v:
            continue
        ctx = GroupContext(dataset=v["dataset"], version=v["version"], group=v["group"])
        cipher = ShardCipher(
            DataKey(bytes.fromhex(v["data_key_hex"])),
            context=ctx,
            shard=v["shard"],
            chunk_bytes=v["chunk_bytes"],
        )
        assert len(cipher.open(bytes.fromhex(v["sealed_hex"]))) == v["plaintext_bytes"]
        for case in (n for n in COMMITTED["negative"] if n["of"] == v["name"]):
            with pytest.raises(DecryptionError):
                cipher.open(bytes.fromhex(case["sealed_hex"]))


def identity(keyid: str) -> VerifyKey:
    return SigningKey.from_seed(bytes.fromhex(KEYS[keyid]["identity_seed_hex"])).public


@pytest.mark.parametrize("vector", COMMITTED["statements"], ids=lambda s: s["name"])
def test_ostraca_verifies_the_committed_statements(vector: dict[str, Any]) -> None:
    env = Envelope.from_json(vector["envelope"].encode())
    signer = identity(env.signatures[0].keyid)
    if vector["name"].startswith("encryption-key"):
        verify_encryption_key(env, owner_keys={signer.keyid: signer}, now=NOW)
        return
    grant = verify_key_grant(env, publisher_keys={signer.keyid: signer}, now=NOW).statement
    recipient = next(k for k in KEYS.values() if k["keyid"] == grant.recipient)
    private = EncryptionPrivateKey(bytes.fromhex(recipient["secret_hex"]))
    shards = {(s["version"], s["group"]): s for s in COMMITTED["shards"]}
    for (version, group), key in open_key_grant(grant, private=private).items():
        if (version, group) in shards:
            assert key.raw.hex() == shards[version, group]["data_key_hex"]
