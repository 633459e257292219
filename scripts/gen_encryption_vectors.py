"""Generate ``protocol_spec/vectors/encryption.json`` (ENCRYPTION.md section 9).

The chunk layer is deterministic (fixed data keys, nonces from the indices), and so are the
identity-derived encryption keys and every Ed25519 signature. HPKE encapsulation is randomized by
design (RFC 9180 offers no public way to fix the ephemeral), so each run writes other ``wrapped``
bytes and other key-grant envelopes; ``tests/protocol_spec/test_encryption_vectors.py`` checks
that the committed file still agrees with the implementation (the deterministic fields byte for
byte, the wrapped keys by opening them), and ``tests/test_encryption_vectors_independent.py``
decrypts it with ``cryptography`` alone.

    python scripts/gen_encryption_vectors.py [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ostraca.protocol_spec import SigningKey, pae, sign_statement
from ostraca.protocol_spec.chunks import chunk_count
from ostraca.protocol_spec.crypto import (
    SCHEME,
    DataKey,
    GroupContext,
    ShardCipher,
    chunk_aad,
    chunk_nonce,
)
from ostraca.protocol_spec.enckeys import (
    SUITE_NAME,
    EncryptionKey,
    EncryptionPrivateKey,
    make_key_grant,
    wrap_info,
)

OUT = Path(__file__).resolve().parents[1] / "protocol_spec" / "vectors" / "encryption.json"
CREATED = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PUBLISHER_SEED = "11" * 32
RESEARCHER_SEED = "22" * 32
PUBLISHER = SigningKey.from_seed(bytes.fromhex(PUBLISHER_SEED))
RESEARCHER = SigningKey.from_seed(bytes.fromhex(RESEARCHER_SEED))
GRANT_ID = hashlib.sha256(b"an AccessGrant payload").hexdigest()


def rule_bytes(n: int) -> bytes:
    """The plaintext rule of every shard vector: byte i is (7 i + 3) mod 251."""
    return bytes((7 * i + 3) % 251 for i in range(n))


def data_key(context: GroupContext) -> DataKey:
    """Fixed data keys: sha256 of ``"vector data key " || dataset || version || group``."""
    text = f"vector data key {context.dataset} {context.version} {context.group}"
    return DataKey(hashlib.sha256(text.encode()).digest())


def shard_vector(
    name: str, context: GroupContext, *, shard: int, size: int, chunk_bytes: int, full: bool
) -> dict[str, Any]:
    key = data_key(context)
    cipher = ShardCipher(key, context=context, shard=shard, chunk_bytes=chunk_bytes)
    sealed = list(cipher.seal_chunks(rule_bytes(size)))
    blob = b"".join(sealed)
    chunk_list = b"".join(hashlib.sha256(c).digest() for c in sealed)
    assert len(sealed) == chunk_count(len(blob), chunk_bytes)
    out: dict[str, Any] = {
        "name": name,
        "dataset": context.dataset,
        "version": context.version,
        "group": context.group,
        "shard": shard,
        "chunk_bytes": chunk_bytes,
        "plaintext_rule": f"byte i is (7 i + 3) mod 251, for i in 0..{size - 1}"
        if size
        else "empty",
        "plaintext_bytes": size,
        "data_key_hex": key.raw.hex(),
        "key_commitment": key.commitment(context),
        "context_hex": context.encode().hex(),
        "sealed_bytes": len(blob),
        "sealed_sha256": hashlib.sha256(blob).hexdigest(),
        "chunk_list_hex": chunk_list.hex(),
        "chunks": hashlib.sha256(chunk_list).hexdigest(),
        "pieces": [
            {
                "index": c,
                "final": c == len(sealed) - 1,
                "nonce_hex": chunk_nonce(shard, c).hex(),
                "aad_hex": chunk_aad(context, shard, c, final=c == len(sealed) - 1).hex(),
                "sealed_bytes": len(piece),
            }
            for c, piece in enumerate(sealed)
        ],
    }
    if full:
        out["sealed_hex"] = blob.hex()
    return out


def negative_vectors(small: dict[str, Any]) -> list[dict[str, Any]]:
    """Sealed shards that MUST NOT open (each → ``decryption_failed``), from the small vector."""
    blob = bytes.fromhex(small["sealed_hex"])
    n = small["chunk_bytes"]
    c = [blob[i : i + n] for i in range(0, len(blob), n)]
    flipped_tag = bytearray(blob)
    flipped_tag[-1] ^= 0x01
    flipped_body = bytearray(blob)
    flipped_body[3] ^= 0x80
    other_shard = ShardCipher(
        data_key(GroupContext(small["dataset"], small["version"], small["group"])),
        context=GroupContext(small["dataset"], small["version"], small["group"]),
        shard=small["shard"] + 1,
        chunk_bytes=n,
    ).seal(rule_bytes(small["plaintext_bytes"]))
    cases = {
        "tampered-tag": ("last byte of the last tag flipped", bytes(flipped_tag)),
        "tampered-ciphertext": ("byte 3 of chunk 0 flipped", bytes(flipped_body)),
        "reordered": ("chunks 0 and 1 swapped", c[1] + c[0] + b"".join(c[2:])),
        "truncated": ("the last chunk dropped", b"".join(c[:-1])),
        "cut": ("the last 5 bytes dropped", blob[:-5]),
        "from-another-shard": ("chunk 0 taken from shard+1", other_shard[:n] + blob[n:]),
    }
    return [
        {"name": k, "description": d, "of": small["name"], "sealed_hex": b.hex()}
        for k, (d, b) in cases.items()
    ]


def key_vector(name: str, seed_hex: str) -> dict[str, Any]:
    identity = SigningKey.from_seed(bytes.fromhex(seed_hex))
    message = EncryptionPrivateKey.derivation_message(0)
    signature = identity.sign(message)
    private = EncryptionPrivateKey.from_signature(signature)
    return {
        "name": name,
        "identity_seed_hex": seed_hex,
        "identity_keyid": identity.keyid,
        "derivation_message_hex": message.hex(),
        "signature_hex": signature.hex(),
        "secret_hex": private.secret.hex(),
        "public_b64": private.public.b64,
        "keyid": private.public.keyid,
    }


def envelope_vector(name: str, envelope_json: bytes, payload_type: str, payload: bytes) -> Any:
    return {
        "name": name,
        "payload_type": payload_type,
        "envelope": envelope_json.decode("ascii"),
        "pae_sha256": hashlib.sha256(pae(payload_type, payload)).hexdigest(),
    }


def build() -> dict[str, Any]:
    ctx = GroupContext(dataset="acme/clinical", version=2, group="default")
    pii = GroupContext(dataset="acme/clinical", version=2, group="pii")
    small = shard_vector("small", ctx, shard=1, size=150, chunk_bytes=64, full=True)
    shards = [
        small,
        shard_vector("empty", pii, shard=0, size=0, chunk_bytes=64, full=True),
        shard_vector("large", ctx, shard=0, size=150_000, chunk_bytes=65536, full=False),
    ]
    researcher = EncryptionPrivateKey.derive(RESEARCHER)
    publisher = EncryptionPrivateKey.derive(PUBLISHER)
    statements = []
    for owner, private in ((RESEARCHER, researcher), (PUBLISHER, publisher)):
        stmt = EncryptionKey(
            owner=owner.keyid,
            public=private.public.b64,
            keyid=private.public.keyid,
            created=CREATED,
        )
        env = sign_statement(stmt, [owner])
        statements.append(
            envelope_vector(
                f"encryption-key-{'researcher' if owner is RESEARCHER else 'publisher'}",
                env.to_json(),
                stmt.PAYLOAD_TYPE,
                stmt.to_payload(),
            )
        )
    keys = {2: {"default": data_key(ctx), "pii": data_key(pii)}}
    for grantee, recipient, grant, label in (
        (RESEARCHER, researcher, GRANT_ID, "key-grant-researcher"),
        (PUBLISHER, publisher, None, "key-grant-escrow"),
    ):
        kg = make_key_grant(
            keys,
            dataset=ctx.dataset,
            publisher=PUBLISHER.keyid,
            grantee=grantee.keyid,
            recipient=recipient.public,
            grant=grant,
            created=CREATED,
        )
        env = sign_statement(kg, [PUBLISHER])
        vector = envelope_vector(label, env.to_json(), kg.PAYLOAD_TYPE, kg.to_payload())
        vector["wrap_info_hex"] = {
            item.group: wrap_info(
                GroupContext(ctx.dataset, item.version, item.group),
                grantee=grantee.keyid,
                recipient=recipient.public.keyid,
            ).hex()
            for item in kg.keys
        }
        statements.append(vector)
    return {
        "spec": "ENCRYPTION.md section 9",
        "generator": "scripts/gen_encryption_vectors.py",
        "scheme": SCHEME,
        "suite": SUITE_NAME,
        "shards": shards,
        "negative": negative_vectors(small),
        "keys": [
            key_vector("publisher", PUBLISHER_SEED),
            key_vector("researcher", RESEARCHER_SEED),
        ],
        "statements": statements,
    }


def render(content: dict[str, Any]) -> bytes:
    return (json.dumps(content, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.write_bytes(render(build()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
