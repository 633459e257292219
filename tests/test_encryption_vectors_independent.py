"""An independent reading of ENCRYPTION.md: decrypt ``vectors/encryption.json`` with
``cryptography`` and the standard library alone. Nothing of ostraca is imported, so a mistake
shared by the implementation and its own tests cannot hide here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VECTORS = json.loads(
    (Path(__file__).parents[1] / "protocol_spec" / "vectors" / "encryption.json").read_text()
)
SHARDS = {v["name"]: v for v in VECTORS["shards"]}
KEYS = {v["name"]: v for v in VECTORS["keys"]}
STATEMENTS = {v["name"]: v for v in VECTORS["statements"]}
SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
TAG = 16


def context(dataset: str, version: int, group: str) -> bytes:
    # ENCRYPTION.md 2.1: u16 len || dataset || u64 version || u16 len || group.
    d, g = dataset.encode(), group.encode()
    return (
        struct.pack(">H", len(d)) + d + struct.pack(">Q", version) + struct.pack(">H", len(g)) + g
    )


def nonce(shard: int, chunk: int) -> bytes:
    return struct.pack(">IQ", shard, chunk)


def aad(ctx: bytes, shard: int, chunk: int, final: bool) -> bytes:
    return b"ostraca-chunk-v1\x00" + ctx + nonce(shard, chunk) + bytes([final])


def rule(n: int) -> bytes:
    return bytes((7 * i + 3) % 251 for i in range(n))


def ctx_of(v: dict[str, Any]) -> bytes:
    return context(v["dataset"], v["version"], v["group"])


def seal(v: dict[str, Any], plaintext: bytes) -> list[bytes]:
    piece = v["chunk_bytes"] - TAG
    count = max(1, -(-len(plaintext) // piece))
    gcm = AESGCM(bytes.fromhex(v["data_key_hex"]))
    return [
        gcm.encrypt(
            nonce(v["shard"], c),
            plaintext[c * piece : (c + 1) * piece],
            aad(ctx_of(v), v["shard"], c, c == count - 1),
        )
        for c in range(count)
    ]


def open_sealed(v: dict[str, Any], blob: bytes) -> bytes:
    n = v["chunk_bytes"]
    pieces = [blob[i : i + n] for i in range(0, len(blob), n)] or [b""]
    gcm = AESGCM(bytes.fromhex(v["data_key_hex"]))
    return b"".join(
        gcm.decrypt(nonce(v["shard"], c), p, aad(ctx_of(v), v["shard"], c, c == len(pieces) - 1))
        for c, p in enumerate(pieces)
    )


@pytest.mark.parametrize("name", sorted(SHARDS))
def test_sealed_shard(name: str) -> None:
    v = SHARDS[name]
    ctx = ctx_of(v)
    assert ctx.hex() == v["context_hex"]
    commitment = hmac.new(
        bytes.fromhex(v["data_key_hex"]),
        b"ostraca-data-key-commitment-v1\x00" + ctx,
        hashlib.sha256,
    ).hexdigest()
    assert commitment == v["key_commitment"]
    sealed = seal(v, rule(v["plaintext_bytes"]))
    blob = b"".join(sealed)
    assert len(blob) == v["sealed_bytes"]
    assert hashlib.sha256(blob).hexdigest() == v["sealed_sha256"]
    chunk_list = b"".join(hashlib.sha256(c).digest() for c in sealed)
    assert chunk_list.hex() == v["chunk_list_hex"]
    assert hashlib.sha256(chunk_list).hexdigest() == v["chunks"]
    for c, p in enumerate(v["pieces"]):
        assert p["nonce_hex"] == nonce(v["shard"], c).hex()
        assert p["aad_hex"] == aad(ctx, v["shard"], c, p["final"]).hex()
        assert p["sealed_bytes"] == len(sealed[c])
    if "sealed_hex" in v:
        assert bytes.fromhex(v["sealed_hex"]) == blob
    assert open_sealed(v, blob) == rule(v["plaintext_bytes"])


@pytest.mark.parametrize("case", VECTORS["negative"], ids=lambda c: c["name"])
def test_negative_does_not_open(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidTag):
        open_sealed(SHARDS[case["of"]], bytes.fromhex(case["sealed_hex"]))


def derived_key(v: dict[str, Any]) -> tuple[hpke.MLKEM768X25519PrivateKey, bytes]:
    identity = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["identity_seed_hex"]))
    message = bytes.fromhex(v["derivation_message_hex"])
    assert message == b"ostraca-encryption-key-v1\n0"
    signature = identity.sign(message)
    assert signature.hex() == v["signature_hex"]
    secret = HKDF(hashes.SHA256(), 96, salt=None, info=b"ostraca-encryption-key-v1").derive(
        signature
    )
    assert secret.hex() == v["secret_hex"]
    kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(secret[:64])
    dh = x25519.X25519PrivateKey.from_private_bytes(secret[64:])
    public = kem.public_key().public_bytes_raw() + dh.public_key().public_bytes_raw()
    assert base64.b64encode(public).decode() == v["public_b64"]
    assert hashlib.sha256(public).hexdigest() == v["keyid"]
    return hpke.MLKEM768X25519PrivateKey(kem, dh), public


@pytest.mark.parametrize("name", sorted(KEYS))
def test_identity_derived_encryption_key(name: str) -> None:
    derived_key(KEYS[name])


def opened(name: str) -> tuple[dict[str, Any], str]:
    """The payload of a statement vector, after its Ed25519 signature over the DSSE PAE."""
    v = STATEMENTS[name]
    env = json.loads(v["envelope"])
    payload = base64.b64decode(env["payload"])
    ptype = env["payloadType"].encode()
    message = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(payload), payload)
    assert hashlib.sha256(message).hexdigest() == v["pae_sha256"]
    (sig,) = env["signatures"]
    signer = next(k for k in KEYS.values() if k["identity_keyid"] == sig["keyid"])
    identity = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(signer["identity_seed_hex"]))
    identity.public_key().verify(base64.b64decode(sig["sig"]), message)
    return json.loads(payload), sig["keyid"]


@pytest.mark.parametrize("who", ["researcher", "publisher"])
def test_encryption_key_statement(who: str) -> None:
    payload, signer = opened(f"encryption-key-{who}")
    assert STATEMENTS[f"encryption-key-{who}"]["payload_type"] == (
        "application/vnd.ostraca.encryption-key+json"
    )
    assert payload["owner"] == signer == KEYS[who]["identity_keyid"]
    assert payload["kem"] == "MLKEM768-X25519"
    assert payload["public"] == KEYS[who]["public_b64"]
    assert payload["keyid"] == KEYS[who]["keyid"]


@pytest.mark.parametrize(
    ("name", "who"), [("key-grant-researcher", "researcher"), ("key-grant-escrow", "publisher")]
)
def test_key_grant_unwraps_to_the_data_keys(name: str, who: str) -> None:
    payload, signer = opened(name)
    assert signer == payload["publisher"] == KEYS["publisher"]["identity_keyid"]
    assert payload["suite"] == "MLKEM768-X25519/HKDF-SHA256/AES-256-GCM"
    assert payload["recipient"] == KEYS[who]["keyid"]
    assert (payload["grant"] is None) == (who == "publisher")
    private, _ = derived_key(KEYS[who])
    for item in payload["keys"]:
        ctx = context(payload["dataset"], item["version"], item["group"])
        info = (
            b"ostraca-key-wrap-v1\x00"
            + ctx
            + bytes.fromhex(payload["grantee"])
            + bytes.fromhex(payload["recipient"])
        )
        assert info.hex() == STATEMENTS[name]["wrap_info_hex"][item["group"]]
        wrapped = base64.b64decode(item["wrapped"])
        assert len(wrapped) == 1120 + 32 + 16
        key = SUITE.decrypt(wrapped, private, info=info)
        expected = hashlib.sha256(
            f"vector data key {payload['dataset']} {item['version']} {item['group']}".encode()
        ).digest()
        assert key == expected
        commitment = hmac.new(
            key, b"ostraca-data-key-commitment-v1\x00" + ctx, hashlib.sha256
        ).hexdigest()
        assert commitment == item["key_commitment"]
        # Meant for this grantee only: another grantee id in the info does not open.
        other = info[:-64] + bytes(32) + info[-32:]
        with pytest.raises(InvalidTag):
            SUITE.decrypt(wrapped, private, info=other)
