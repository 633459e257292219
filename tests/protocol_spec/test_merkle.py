"""Merkle proofs: generated proofs verify for every size, and every alteration is refused."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ostraca.protocol_spec import MalformedError
from ostraca.protocol_spec.errors import ConsistencyProofError, InclusionProofError
from ostraca.protocol_spec.merkle import (
    EMPTY_ROOT,
    MAX_TREE_SIZE,
    ConsistencyProof,
    InclusionProof,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    new_nodes,
    range_proof,
    root_from_leaves,
    tree_root,
    verify_consistency,
    verify_inclusion,
    verify_range,
)

PROPS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BIG = MerkleTree(leaf_hash(i.to_bytes(4, "big")) for i in range(300))


def _leaf(i: int) -> bytes:
    return leaf_hash(i.to_bytes(4, "big"))


def _flip(hashes: list[bytes], which: int, bit: int) -> list[bytes]:
    out = list(hashes)
    h = bytearray(out[which])
    h[bit // 8] ^= 1 << (bit % 8)
    out[which] = bytes(h)
    return out


@st.composite
def _index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, BIG.size))
    return draw(st.integers(0, size - 1)), size


@st.composite
def _sizes(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(2, BIG.size))
    return draw(st.integers(1, new - 1)), new


@PROPS
@given(_index_and_size(), st.data())
def test_inclusion_proofs_verify_and_any_flipped_bit_fails(
    at: tuple[int, int], data: st.DataObject
) -> None:
    index, size = at
    proof, root = BIG.inclusion_proof(index, size), BIG.root(size)
    verify_inclusion(leaf=_leaf(index), index=index, tree_size=size, proof=proof, root=root)
    assert len(proof) <= (size - 1).bit_length()
    parts = [_leaf(index), root, *proof]
    which = data.draw(st.integers(0, len(parts) - 1))
    bad = _flip(parts, which, data.draw(st.integers(0, 255)))
    with pytest.raises(InclusionProofError):
        verify_inclusion(leaf=bad[0], index=index, tree_size=size, proof=bad[2:], root=bad[1])


@PROPS
@given(_sizes(), st.data())
def test_consistency_proofs_verify_and_any_flipped_bit_fails(
    sizes: tuple[int, int], data: st.DataObject
) -> None:
    old, new = sizes
    proof = BIG.consistency_proof(old, new)
    roots = [BIG.root(old), BIG.root(new)]
    verify_consistency(
        old_size=old, new_size=new, old_root=roots[0], new_root=roots[1], proof=proof
    )
    parts = [*roots, *proof]
    which = data.draw(st.integers(0, len(parts) - 1))
    bad = _flip(parts, which, data.draw(st.integers(0, 255)))
    with pytest.raises(ConsistencyProofError):
        verify_consistency(
            old_size=old, new_size=new, old_root=bad[0], new_root=bad[1], proof=bad[2:]
        )


@PROPS
@given(_index_and_size(), st.data())
def test_range_proofs_verify_and_any_change_fails(at: tuple[int, int], data: st.DataObject) -> None:
    start, size = at
    leaves = [_leaf(i) for i in range(start, size)]
    proof, root = BIG.range_proof(start), BIG.root(size)
    assert proof == range_proof(start, BIG.node)
    assert len(proof) == bin(start).count("1")
    verify_range(start=start, leaves=leaves, tree_size=size, proof=proof, root=root)
    parts = [root, *proof, *leaves]
    bad = _flip(parts, data.draw(st.integers(0, len(parts) - 1)), data.draw(st.integers(0, 255)))
    cut = 1 + len(proof)
    with pytest.raises(InclusionProofError):
        verify_range(start=start, leaves=bad[cut:], tree_size=size, proof=bad[1:cut], root=bad[0])
    for other in (leaves[:-1], [*leaves, _leaf(size)], leaves[1:], leaves[::-1]):
        if other != leaves:
            with pytest.raises(InclusionProofError):
                verify_range(start=start, leaves=other, tree_size=size, proof=proof, root=root)


@pytest.mark.parametrize(
    ("start", "size", "proof_from"),
    [(5, 4, 5), (-1, 4, 0), (3, 8, 4), (4, 8, 3), (0, MAX_TREE_SIZE + 1, 0)],
    ids=["start beyond size", "negative start", "longer proof", "shorter proof", "huge size"],
)
def test_range_with_wrong_bounds_fails(start: int, size: int, proof_from: int) -> None:
    leaves = [_leaf(i) for i in range(max(start, 0), min(size, BIG.size))]
    with pytest.raises(InclusionProofError):
        verify_range(
            start=start,
            leaves=leaves,
            tree_size=size,
            proof=BIG.range_proof(proof_from),
            root=BIG.root(8),
        )


def test_range_of_nothing_after_the_end() -> None:
    verify_range(start=9, leaves=[], tree_size=9, proof=BIG.range_proof(9), root=BIG.root(9))
    verify_range(start=0, leaves=[], tree_size=0, proof=[], root=EMPTY_ROOT)


def test_inclusion_proof_of_one_index_fails_at_every_other() -> None:
    """Sizes are not bound into the hashes (a proof for size 3 can also hold for size 4, against
    the same root), but within one tree each index has its own path."""
    for size in range(1, 65):
        root = BIG.root(size)
        for index in range(size):
            proof = BIG.inclusion_proof(index, size)
            for other in range(size):
                if other != index:
                    with pytest.raises(InclusionProofError):
                        verify_inclusion(
                            leaf=_leaf(index), index=other, tree_size=size, proof=proof, root=root
                        )


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(lambda p: p[:-1], id="truncated"),
        pytest.param(lambda p: [*p, p[0]], id="trailing hash"),
        pytest.param(lambda p: [p[0], *p], id="preceding hash"),
        pytest.param(lambda p: p[::-1], id="reversed"),
        pytest.param(lambda p: [p[0][:31], *p[1:]], id="short hash"),
        pytest.param(lambda p: [p[0] + b"\0", *p[1:]], id="long hash"),
        pytest.param(lambda p: [*p, *([p[0]] * 64)], id="oversized"),
    ],
)
def test_altered_proofs_are_refused(alter: Any) -> None:
    root = BIG.root(255)
    with pytest.raises(InclusionProofError):
        verify_inclusion(
            leaf=_leaf(77),
            index=77,
            tree_size=255,
            proof=alter(BIG.inclusion_proof(77, 255)),
            root=root,
        )
    with pytest.raises(ConsistencyProofError):
        verify_consistency(
            old_size=77,
            new_size=255,
            old_root=BIG.root(77),
            new_root=root,
            proof=alter(BIG.consistency_proof(77, 255)),
        )


def test_swapped_roots_are_refused() -> None:
    with pytest.raises(ConsistencyProofError):
        verify_consistency(
            old_size=5,
            new_size=9,
            old_root=BIG.root(9),
            new_root=BIG.root(5),
            proof=BIG.consistency_proof(5, 9),
        )


@pytest.mark.parametrize(
    ("old", "new", "proof", "roots_equal"),
    [
        pytest.param(0, 0, [], True, id="empty trees"),
        pytest.param(0, 5, [], False, id="from the empty tree"),
        pytest.param(5, 4, [], False, id="shrinking"),
        pytest.param(5, 5, [EMPTY_ROOT], True, id="equal sizes with a proof"),
        pytest.param(5, 5, [], False, id="equal sizes, two roots"),
        pytest.param(5, 6, [], False, id="empty proof"),
        pytest.param(2**64, 2**64 + 1, [EMPTY_ROOT], False, id="beyond uint63"),
    ],
)
def test_consistency_edge_cases_are_refused(
    old: int, new: int, proof: list[bytes], roots_equal: bool
) -> None:
    other = EMPTY_ROOT if roots_equal else leaf_hash(b"x")
    with pytest.raises(ConsistencyProofError):
        verify_consistency(
            old_size=old, new_size=new, old_root=EMPTY_ROOT, new_root=other, proof=proof
        )


def test_equal_sizes_and_roots_are_consistent() -> None:
    root = BIG.root(5)
    verify_consistency(old_size=5, new_size=5, old_root=root, new_root=root, proof=[])


@pytest.mark.parametrize(
    ("index", "size"), [(0, 0), (5, 5), (-1, 3), (True, 3), (0, MAX_TREE_SIZE + 1)]
)
def test_inclusion_out_of_range_is_refused(index: int, size: int) -> None:
    with pytest.raises(InclusionProofError):
        verify_inclusion(leaf=EMPTY_ROOT, index=index, tree_size=size, proof=[], root=EMPTY_ROOT)
    with pytest.raises(MalformedError):
        inclusion_proof(index, size, BIG.node)


@pytest.mark.parametrize(("old", "new"), [(0, 3), (4, 3), (-1, 3), (3, MAX_TREE_SIZE + 1)])
def test_consistency_generation_refuses_bad_sizes(old: int, new: int) -> None:
    with pytest.raises(MalformedError):
        consistency_proof(old, new, BIG.node)


def test_one_leaf_tree() -> None:
    leaf = _leaf(0)
    assert BIG.root(1) == leaf == tree_root(1, BIG.node)
    assert BIG.inclusion_proof(0, 1) == []
    verify_inclusion(leaf=leaf, index=0, tree_size=1, proof=[], root=leaf)


def test_streamed_root_and_stored_nodes_agree() -> None:
    leaves = [_leaf(i) for i in range(BIG.size)]
    stored: dict[tuple[int, int], bytes] = {}
    for size, leaf in enumerate(leaves):
        for level, index, h in new_nodes(size, leaf, lambda lv, ix: stored[(lv, ix)]):
            stored[(level, index)] = h
        assert tree_root(size + 1, lambda lv, ix: stored[(lv, ix)]) == BIG.root(size + 1)
    assert len(stored) == 2 * len(leaves) - bin(len(leaves)).count("1")
    assert root_from_leaves(leaves) == BIG.root()
    assert root_from_leaves([]) == EMPTY_ROOT


def test_nodes_outside_the_tree_and_bad_leaves_are_refused() -> None:
    with pytest.raises(MalformedError):
        BIG.node(0, BIG.size)
    with pytest.raises(MalformedError):
        new_nodes(0, b"short", BIG.node)


def test_proof_json_round_trip() -> None:
    inc = InclusionProof(index=7, tree_size=255, hashes=tuple(BIG.inclusion_proof(7, 255)))
    assert InclusionProof.from_dict(inc.to_dict()) == inc
    inc.verify(leaf=_leaf(7), root=BIG.root(255))
    con = ConsistencyProof(old_size=7, new_size=255, hashes=tuple(BIG.consistency_proof(7, 255)))
    assert ConsistencyProof.from_dict(con.to_dict()) == con
    con.verify(old_root=BIG.root(7), new_root=BIG.root(255))


GOOD_HASH = base64.b64encode(EMPTY_ROOT).decode()


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param([], id="not an object"),
        pytest.param({"index": 0, "tree_size": 1}, id="missing hashes"),
        pytest.param({"index": 0, "tree_size": 1, "hashes": [], "x": 1}, id="unknown key"),
        pytest.param({"index": "0", "tree_size": 1, "hashes": []}, id="string index"),
        pytest.param({"index": True, "tree_size": 1, "hashes": []}, id="boolean index"),
        pytest.param({"index": 0, "tree_size": -1, "hashes": []}, id="negative size"),
        pytest.param({"index": 0, "tree_size": 2**63, "hashes": []}, id="size beyond 2**63-1"),
        pytest.param({"index": 0, "tree_size": 1, "hashes": "AA=="}, id="hashes not a list"),
        pytest.param({"index": 0, "tree_size": 1, "hashes": [GOOD_HASH] * 65}, id="oversized"),
        pytest.param({"index": 0, "tree_size": 1, "hashes": ["AAAA"]}, id="short hash"),
        pytest.param({"index": 0, "tree_size": 1, "hashes": [GOOD_HASH[:-1] + "!"]}, id="not b64"),
        pytest.param(
            {"index": 0, "tree_size": 1, "hashes": [GOOD_HASH[:-2] + "V="]}, id="non-canonical"
        ),
        pytest.param({"index": 0, "tree_size": 1, "hashes": [7]}, id="hash not a string"),
    ],
)
def test_malformed_proof_json_is_refused(obj: Any) -> None:
    with pytest.raises(MalformedError):
        InclusionProof.from_dict(obj)


def test_malformed_consistency_json_is_refused() -> None:
    with pytest.raises(MalformedError):
        ConsistencyProof.from_dict({"index": 0, "tree_size": 1, "hashes": []})
