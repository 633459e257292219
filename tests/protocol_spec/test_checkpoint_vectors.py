"""Ostraca's own log vectors (``vectors/log.json`` "ostraca", LOG.md section 8): entries, roots,
every proof of a five-entry log, a signed and cosigned checkpoint and a witness request, all from
fixed seeds. Regenerate with ``python tests/protocol_spec/test_checkpoint_vectors.py``."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ostraca.protocol_spec import SigningKey, canonical_bytes
from ostraca.protocol_spec.checkpoint import (
    Checkpoint,
    WitnessRequest,
    cosign_checkpoint,
    log_verifier,
    open_checkpoint,
    sign_checkpoint,
    verify_checkpoint_update,
    verify_entry_inclusion,
)
from ostraca.protocol_spec.envelope import sign_envelope
from ostraca.protocol_spec.merkle import (
    ConsistencyProof,
    InclusionProof,
    MerkleTree,
    leaf_hash,
    verify_range,
)
from ostraca.protocol_spec.note import COSIGNATURE_V1, Note, NoteSigner, NoteVerifier

FILE = Path(__file__).resolve().parents[2] / "protocol_spec" / "vectors" / "log.json"
ORIGIN = "registry.example/log"
SIGNED_AT = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
ENTRIES = 5


def _seed(label: str) -> bytes:
    return hashlib.sha256(f"ostraca log vector {label}".encode()).digest()


def _witness(n: int) -> NoteSigner:
    return NoteSigner(
        name=f"witness{n}.example/w",
        key=SigningKey.from_seed(_seed(f"witness {n}")),
        sig_type=COSIGNATURE_V1,
    )


def _entries() -> list[bytes]:
    key = SigningKey.from_seed(_seed("publisher"))
    payloads = [canonical_bytes({"entry": i, "vector": "log"}) for i in range(ENTRIES)]
    return [
        sign_envelope("application/vnd.ostraca.test+json", p, [key]).to_json() for p in payloads
    ]


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in hashes]


def build() -> dict[str, Any]:
    entries = _entries()
    tree = MerkleTree(leaf_hash(e) for e in entries)
    log_key = SigningKey.from_seed(_seed("log"))
    checkpoint = Checkpoint(origin=ORIGIN, size=ENTRIES, root=tree.root())
    signed = sign_checkpoint(checkpoint, key=log_key, now=SIGNED_AT)
    cosigs = [
        cosign_checkpoint(checkpoint, signer=_witness(n), now=SIGNED_AT.replace(second=n + 1))
        for n in (1, 2)
    ]
    old = Checkpoint(origin=ORIGIN, size=3, root=tree.root(3))
    return {
        "log": {
            "origin": ORIGIN,
            "seed_hex": _seed("log").hex(),
            "vkey": log_verifier(ORIGIN, log_key.public).to_vkey(),
        },
        "witnesses": [
            {
                "name": _witness(n).name,
                "seed_hex": _seed(f"witness {n}").hex(),
                "vkey": _witness(n).verifier.to_vkey(),
            }
            for n in (1, 2)
        ],
        "entries": [e.decode("utf-8") for e in entries],
        "leaf_hashes_hex": [leaf_hash(e).hex() for e in entries],
        "roots_hex": [tree.root(n).hex() for n in range(ENTRIES + 1)],
        "inclusion": [
            InclusionProof(index=i, tree_size=n, hashes=tuple(tree.inclusion_proof(i, n))).to_dict()
            for n in range(1, ENTRIES + 1)
            for i in range(n)
        ],
        "consistency": [
            ConsistencyProof(
                old_size=m, new_size=n, hashes=tuple(tree.consistency_proof(m, n))
            ).to_dict()
            for n in range(1, ENTRIES + 1)
            for m in range(1, n + 1)
        ],
        "range": [
            {"start": k, "tree_size": ENTRIES, "hashes": _b64(tree.range_proof(k))}
            for k in range(ENTRIES + 1)
        ],
        "checkpoint": {
            "signed_at": f"{SIGNED_AT:%Y-%m-%dT%H:%M:%SZ}",
            "text": checkpoint.text(),
            "signed_note": signed.decode("utf-8"),
            "cosigned_note": Note.from_bytes(signed)
            .with_signatures(*cosigs)
            .to_bytes()
            .decode("utf-8"),
            "old_signed_note": sign_checkpoint(
                old, key=log_key, now=SIGNED_AT.replace(hour=11)
            ).decode("utf-8"),
        },
        "witness_request": WitnessRequest(
            old_size=3, proof=tuple(tree.consistency_proof(3)), note=signed
        )
        .to_bytes()
        .decode("utf-8"),
    }


VECTORS: dict[str, Any] = json.loads(FILE.read_text(encoding="ascii"))
OURS: dict[str, Any] = VECTORS["ostraca"]


def test_vectors_are_reproducible() -> None:
    assert build() == OURS


def test_vectors_verify() -> None:
    log = NoteVerifier.from_vkey(OURS["log"]["vkey"])
    witnesses = [NoteVerifier.from_vkey(w["vkey"]) for w in OURS["witnesses"]]
    now = SIGNED_AT.replace(hour=13)
    cp = OURS["checkpoint"]
    signed = open_checkpoint(
        cp["cosigned_note"].encode(), log=log, witnesses=witnesses, witness_quorum=2, now=now
    )
    assert signed.checkpoint.text() == cp["text"]
    assert [w.timestamp for w in signed.witnesses] == [
        int(SIGNED_AT.timestamp()) + 2,
        int(SIGNED_AT.timestamp()) + 3,
    ]
    old = open_checkpoint(cp["old_signed_note"].encode(), log=log, now=now)
    request = WitnessRequest.from_bytes(OURS["witness_request"].encode())
    assert verify_checkpoint_update(trusted=old, presented=signed, proof=request.proof) == signed
    for obj in OURS["inclusion"]:
        proof = InclusionProof.from_dict(obj)
        entry = OURS["entries"][proof.index].encode()
        root = bytes.fromhex(OURS["roots_hex"][proof.tree_size])
        verify_entry_inclusion(
            entry,
            proof=proof,
            checkpoint=Checkpoint(origin=ORIGIN, size=proof.tree_size, root=root),
        )
    for obj in OURS["consistency"]:
        c = ConsistencyProof.from_dict(obj)
        c.verify(
            old_root=bytes.fromhex(OURS["roots_hex"][c.old_size]),
            new_root=bytes.fromhex(OURS["roots_hex"][c.new_size]),
        )
    for obj in OURS["range"]:
        verify_range(
            start=obj["start"],
            leaves=[leaf_hash(e.encode()) for e in OURS["entries"][obj["start"] :]],
            tree_size=obj["tree_size"],
            proof=[base64.b64decode(h) for h in obj["hashes"]],
            root=signed.checkpoint.root,
        )
    assert base64.b64decode(cp["text"].split("\n")[2]).hex() == OURS["roots_hex"][ENTRIES]


if __name__ == "__main__":
    VECTORS["ostraca"] = build()
    FILE.write_text(json.dumps(VECTORS, indent=1, ensure_ascii=True) + "\n", encoding="ascii")
