"""Our RFC 6962 hashing against independent published test data (``vectors/merkle.json``).

The data comes unchanged from transparency-dev/merkle and from Go's sumdb (responses of Google's
Argon 2020 Certificate Transparency log); the file names its sources and commits.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from ostraca.protocol_spec.errors import ProofError
from ostraca.protocol_spec.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    NodeSource,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaves,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "protocol_spec" / "vectors" / "merkle.json").read_text(
        encoding="ascii"
    )
)

STRICTER = {
    "testdata/consistency/additional/sizes-are-equal-one-and-proof-is-empty.json":
    # The published vector accepts two equal 12-byte "roots"; we refuse any hash not 32 bytes.
    "roots that are not 32 bytes",
}


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def _proof(vector: dict[str, Any]) -> list[bytes]:
    return [_b64(h) for h in vector["proof"] or []]


def _accepts(kind: str, v: dict[str, Any]) -> bool:
    try:
        if kind == "inclusion":
            verify_inclusion(
                leaf=_b64(v["leafHash"]),
                index=v["leafIdx"],
                tree_size=v["treeSize"],
                proof=_proof(v),
                root=_b64(v["root"]),
            )
        else:
            verify_consistency(
                old_size=v["size1"],
                new_size=v["size2"],
                old_root=_b64(v["root1"]),
                new_root=_b64(v["root2"]),
                proof=_proof(v),
            )
    except ProofError:
        return False
    return True


@pytest.mark.parametrize(
    ("kind", "vector"),
    [(kind, v) for kind in ("inclusion", "consistency") for v in VECTORS[kind]],
    ids=lambda x: x["file"] if isinstance(x, dict) else x,
)
def test_transparency_dev_probe(kind: str, vector: dict[str, Any]) -> None:
    want = not vector["wantErr"] and vector["file"] not in STRICTER
    assert _accepts(kind, vector) is want


def test_probe_counts() -> None:
    assert len(VECTORS["inclusion"]) == 98
    assert len(VECTORS["consistency"]) == 98


@pytest.mark.parametrize("case", VECTORS["hasher"], ids=lambda c: c["desc"])
def test_hasher(case: dict[str, Any]) -> None:
    if "empty_root" in case:
        got = EMPTY_ROOT
    elif "leaf_hex" in case:
        got = leaf_hash(bytes.fromhex(case["leaf_hex"]))
    else:
        got = node_hash(bytes.fromhex(case["left_hex"]), bytes.fromhex(case["right_hex"]))
    assert got.hex() == case["want"]


def test_roots_of_the_reference_tree() -> None:
    leaves = [leaf_hash(bytes.fromhex(x)) for x in VECTORS["tree"]["leaf_inputs_hex"]]
    tree = MerkleTree(leaves)
    for size, want in enumerate(VECTORS["tree"]["roots_hex"]):
        assert tree.root(size).hex() == want
        assert root_from_leaves(leaves[:size]).hex() == want


def _valid_subtree(start: int, end: int) -> bool:
    if start in (0, end):
        return True
    return start & ((1 << (end - start - 1).bit_length()) - 1) == 0


def _shifted(tree: MerkleTree, start: int) -> NodeSource:
    return lambda level, index: tree.node(level, index + (start >> level))


def test_draft_subtree_digests() -> None:
    """Every subtree hash and subtree inclusion proof of a 130-leaf tree, folded into one SHA-256
    exactly as transparency-dev's ``testonly/vectors_test.go`` does."""
    spec = VECTORS["subtree_digests"]
    size = spec["max_size"]
    tree = MerkleTree(leaf_hash(bytes([i])) for i in range(size))
    hashes, proofs = hashlib.sha256(), hashlib.sha256()
    for end in range(size + 1):
        for start in filter(lambda s: _valid_subtree(s, end), range(end + 1)):
            hashes.update(
                f"[{start}, {end}) {subtree_hash(start, end, tree.node).hex()}\n".encode()
            )
            for index in range(start, end):
                path = inclusion_proof(index - start, end - start, _shifted(tree, start))
                line = f"{index} [{start}, {end})" + "".join(f" {h.hex()}" for h in path)
                proofs.update(f"{line}\n".encode())
    assert hashes.hexdigest() == spec["hash_lines"]["sha256"]
    assert proofs.hexdigest() == spec["inclusion_lines"]["sha256"]


def test_certificate_transparency_argon2020() -> None:
    ct = VECTORS["ct_argon2020"]
    root = _b64(ct["sha256_root_hash"])
    verify_inclusion(
        leaf=leaf_hash(_b64(ct["leaf_input"])),
        index=ct["leaf_index"],
        tree_size=ct["tree_size"],
        proof=[_b64(h) for h in ct["audit_path"]],
        root=root,
    )
    verify_consistency(
        old_size=ct["old_size"],
        new_size=ct["tree_size"],
        old_root=_b64(ct["old_root"]),
        new_root=root,
        proof=[_b64(h) for h in ct["consistency"]],
    )
