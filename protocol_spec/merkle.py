"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs (LOG.md section 2).

Pure: hashes in, hashes out. Generation never needs the whole tree in memory; it reads *nodes*,
the roots of perfect subtrees, through a :data:`NodeSource` ``node(level, index)`` that returns
``MTH(D[index * 2**level : (index + 1) * 2**level])`` (level 0 is the leaf hashes). A registry
keeps those nodes in its database, written by :func:`new_nodes` in the transaction that appends
the leaf; a monitor or a test keeps them in a :class:`MerkleTree`.

Cost, for a tree of ``n`` leaves:

* appending a leaf (:func:`new_nodes`): one hash and one node read on average, at most
  ``log2 n`` of each; it creates on average two stored nodes per leaf;
* a root (:func:`tree_root`), an inclusion proof, a consistency proof: at most ``2 log2 n`` node
  reads and ``log2 n`` hashes; a proof holds at most ``ceil(log2 n) + 1`` hashes (1 KB at 10**6);
* verifying a proof: ``log2 n`` hashes, no reads;
* :func:`root_from_leaves`: ``n`` hashes and ``log2 n`` memory, for recomputing a whole log;
  :func:`verify_range`: the same for the ``k`` entries after ``start`` (a client reading every
  statement after its grant), with a :func:`range_proof` of at most ``log2 n`` hashes.

Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step, and refuses every hash
that is not 32 bytes. ``tests/protocol_spec/test_merkle_vectors.py`` checks it against the
published test data of transparency-dev/merkle and Go's sumdb (``vectors/merkle.json``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import (
    ConsistencyProofError,
    InclusionProofError,
    MalformedError,
    ProofError,
    VerificationError,
)

HASH_SIZE = 32
MAX_TREE_SIZE = 2**63 - 1
"""The largest tree size a checkpoint or proof may state (RFC 9162 sizes are uint64; we stay in
int64 like Go's sumdb so every implementation can hold it)."""
MAX_PROOF_HASHES = 64
"""More hashes than any proof for a tree of at most :data:`MAX_TREE_SIZE` leaves holds."""
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the empty tree: the hash of the empty string (RFC 9162 section 2.1.1)."""

NodeSource = Callable[[int, int], bytes]
"""``node(level, index)``: the root of the perfect subtree of ``2**level`` leaves starting at leaf
``index * 2**level``. Only nodes of complete subtrees are ever asked for."""


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``: the hash of one log entry (the envelope bytes, as stored)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``): where RFC 9162 splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_size(
    size: int, what: str, error: type[VerificationError | MalformedError] = MalformedError
) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
        raise error(f"{what} must be an integer in [0, 2**63 - 1], got {size!r}")


def _perfect_nodes(start: int, end: int) -> list[tuple[int, int]]:
    """The (level, index) of the perfect subtrees that tile [start, end), left to right."""
    out: list[tuple[int, int]] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        out.append((level, start >> level))
        start += 1 << level
    return out


def subtree_hash(start: int, end: int, node: NodeSource) -> bytes:
    """``MTH(D[start:end])`` for a subtree of the tree (``start`` a multiple of the smallest power
    of two ``>= end - start``, which every subtree a proof needs is); ``EMPTY_ROOT`` if empty."""
    return _fold_right([node(level, index) for level, index in _perfect_nodes(start, end)])


def _fold_right(hashes: list[bytes]) -> bytes:
    """The root over perfect subtrees listed left to right (each smaller than the one before)."""
    if not hashes:
        return EMPTY_ROOT
    out = hashes[-1]
    for left in reversed(hashes[:-1]):
        out = node_hash(left, out)
    return out


def tree_root(size: int, node: NodeSource) -> bytes:
    """The root of the first ``size`` leaves: ``MTH(D[0:size])``."""
    _check_size(size, "tree size")
    return subtree_hash(0, size, node)


def new_nodes(size: int, leaf: bytes, node: NodeSource) -> list[tuple[int, int, bytes]]:
    """The nodes completed by appending ``leaf`` as entry number ``size``: ``(level, index, hash)``
    from the leaf itself upwards. The caller stores them with the entry; ``node`` is read only for
    the left siblings, which are already stored."""
    _check_size(size, "tree size")
    if len(leaf) != HASH_SIZE:
        raise MalformedError(f"a leaf hash is {HASH_SIZE} bytes, got {len(leaf)}")
    out = [(0, size, leaf)]
    level, index, current = 0, size, leaf
    while index & 1:
        current = node_hash(node(level, index - 1), current)
        level, index = level + 1, index >> 1
        out.append((level, index, current))
    return out


def _fold(stack: list[tuple[int, bytes]], leaves: Iterable[bytes]) -> bytes:
    """Append ``leaves`` to the perfect subtrees ``stack`` (levels strictly decreasing, left to
    right: a compact range from leaf 0) and return the root of the whole."""
    for leaf in leaves:
        level, current = 0, leaf
        while stack and stack[-1][0] == level:
            current = node_hash(stack.pop()[1], current)
            level += 1
        stack.append((level, current))
    return _fold_right([h for _, h in stack])


def root_from_leaves(leaves: Iterable[bytes]) -> bytes:
    """The root over all ``leaves`` (leaf hashes), streamed in ``log2 n`` memory."""
    return _fold([], leaves)


def range_proof(start: int, node: NodeSource) -> list[bytes]:
    """The roots of the perfect subtrees that tile entries ``[0, start)``, left to right: with
    every leaf from ``start`` to the tree size they rebuild the root (:func:`verify_range`), so a
    client can check it was shown *all* entries after one of its own (at most ``log2 n`` hashes)."""
    _check_size(start, "range start")
    return [node(level, index) for level, index in _perfect_nodes(0, start)]


def verify_range(
    *, start: int, leaves: Sequence[bytes], tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`InclusionProofError` unless ``leaves`` (leaf hashes) are exactly entries
    ``start`` to ``tree_size - 1`` of the tree with ``root``, given :func:`range_proof`."""
    _check_size(tree_size, "tree size", InclusionProofError)
    _check_size(start, "range start", InclusionProofError)
    _check_hashes([root, *proof], "range proof", InclusionProofError)
    levels = [level for level, _ in _perfect_nodes(0, start)] if start <= tree_size else []
    if start + len(leaves) != tree_size or len(proof) != len(levels):
        raise InclusionProofError(f"entries from {start} do not reach tree size {tree_size}")
    if any(not isinstance(h, bytes) or len(h) != HASH_SIZE for h in leaves):
        raise InclusionProofError(f"a leaf hash is {HASH_SIZE} bytes")
    if _fold(list(zip(levels, proof, strict=True)), leaves) != root:
        raise InclusionProofError(f"entries {start} to {tree_size - 1} do not lead to the root")


def inclusion_proof(index: int, size: int, node: NodeSource) -> list[bytes]:
    """RFC 9162 ``PATH(index, D[0:size])``, leaf to root. ``index < size`` or MalformedError."""
    _check_size(size, "tree size")
    _check_size(index, "leaf index")
    if index >= size:
        raise MalformedError(f"leaf index {index} is not below tree size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(subtree_hash(lo + k, hi, node))
            hi = lo + k
        else:
            path.append(subtree_hash(lo, lo + k, node))
            lo += k
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, node: NodeSource) -> list[bytes]:
    """RFC 9162 ``PROOF(old_size, D[0:new_size])``; empty when the sizes are equal.
    Needs ``0 < old_size <= new_size`` (nothing proves consistency with the empty tree: every
    tree is), or MalformedError."""
    _check_size(old_size, "old tree size")
    _check_size(new_size, "new tree size")
    if not 0 < old_size <= new_size:
        raise MalformedError(f"no consistency proof from size {old_size} to size {new_size}")
    proof: list[bytes] = []
    m, lo, hi, whole = old_size, 0, new_size, True  # SUBPROOF(m, D[lo:hi], whole)
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(subtree_hash(lo + k, hi, node))
            hi = lo + k
        else:
            proof.append(subtree_hash(lo, lo + k, node))
            m, lo, whole = m - k, lo + k, False
    if not whole:
        proof.append(subtree_hash(lo, hi, node))
    proof.reverse()
    return proof


def _check_hashes(hashes: Sequence[bytes], what: str, error: type[ProofError]) -> None:
    if len(hashes) > MAX_PROOF_HASHES:
        raise error(f"{what} has {len(hashes)} hashes, more than any proof holds")
    for h in hashes:
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise error(f"{what} holds a value that is not a {HASH_SIZE}-byte hash")


def _shift_until_odd_or_zero(fn: int, sn: int) -> tuple[int, int]:
    while fn and not fn & 1:
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def verify_inclusion(
    *, leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`InclusionProofError` unless ``proof`` proves leaf hash ``leaf`` is entry
    ``index`` of the tree of ``tree_size`` leaves whose root is ``root`` (RFC 9162 2.1.3.2)."""
    _check_size(tree_size, "tree size", InclusionProofError)
    _check_size(index, "leaf index", InclusionProofError)
    _check_hashes([leaf, root, *proof], "inclusion proof", InclusionProofError)
    # 1. The index must be inside the tree.
    if index >= tree_size:
        raise InclusionProofError(f"leaf index {index} is not below tree size {tree_size}")
    # 2-3.
    fn, sn, r = index, tree_size - 1, leaf
    # 4. Fold the path in.
    for p in proof:
        if sn == 0:
            raise InclusionProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            fn, sn = _shift_until_odd_or_zero(fn, sn)
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    # 5. The path must end at the root, and be the root.
    if sn != 0:
        raise InclusionProofError("inclusion proof is shorter than the path to the root")
    if r != root:
        raise InclusionProofError(f"inclusion proof of entry {index} does not lead to the root")


def verify_consistency(
    *, old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`ConsistencyProofError` unless ``proof`` proves the tree of ``old_size``
    leaves with root ``old_root`` is a prefix of the tree of ``new_size`` leaves with root
    ``new_root`` (RFC 9162 2.1.4.2). Equal sizes need an empty proof and equal roots; an
    ``old_size`` of 0 is refused, as there is nothing to prove (the caller decides)."""
    _check_size(old_size, "old tree size", ConsistencyProofError)
    _check_size(new_size, "new tree size", ConsistencyProofError)
    _check_hashes([old_root, new_root, *proof], "consistency proof", ConsistencyProofError)
    if old_size > new_size:
        raise ConsistencyProofError(f"tree size went down from {old_size} to {new_size}")
    if old_size == 0:
        raise ConsistencyProofError("a consistency proof from the empty tree proves nothing")
    if old_size == new_size:
        if proof:
            raise ConsistencyProofError("equal tree sizes need an empty consistency proof")
        if old_root != new_root:
            raise ConsistencyProofError(f"two different roots for tree size {old_size}")
        return
    # 1. An empty path proves nothing.
    if not proof:
        raise ConsistencyProofError("empty consistency proof between different sizes")
    # 2. A perfect old tree is its own first node.
    path = [old_root, *proof] if old_size & (old_size - 1) == 0 else list(proof)
    # 3-4.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    # 5-6. Rebuild both roots from the same path.
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ConsistencyProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            fn, sn = _shift_until_odd_or_zero(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    # 7. Both roots must come out, and the path must have reached the top.
    if sn != 0:
        raise ConsistencyProofError("consistency proof is shorter than the path to the root")
    if fr != old_root:
        raise ConsistencyProofError(f"consistency proof does not rebuild the size-{old_size} root")
    if sr != new_root:
        raise ConsistencyProofError(f"consistency proof does not rebuild the size-{new_size} root")


class MerkleTree:
    """Every node of a tree, in memory (about 2 hashes per leaf): for monitors, witnesses' own
    checks and tests. ``tree.node`` is a :data:`NodeSource` for the functions above."""

    __slots__ = ("_levels",)

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> None:
        """Append one leaf hash (use :func:`leaf_hash` on the entry)."""
        for level, _, h in new_nodes(self.size, leaf, self.node):
            if level == len(self._levels):
                self._levels.append([])
            self._levels[level].append(h)

    def node(self, level: int, index: int) -> bytes:
        try:
            return self._levels[level][index]
        except IndexError:
            raise MalformedError(
                f"node ({level}, {index}) is not in a tree of {self.size}"
            ) from None

    def root(self, size: int | None = None) -> bytes:
        return tree_root(self.size if size is None else size, self.node)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self.size if size is None else size, self.node)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return consistency_proof(old_size, self.size if new_size is None else new_size, self.node)

    def range_proof(self, start: int) -> list[bytes]:
        return range_proof(start, self.node)


def hash_from_b64(text: Any, what: str = "hash") -> bytes:
    """A 32-byte hash from its canonical base64 (MalformedError otherwise)."""
    if not isinstance(text, str):
        raise MalformedError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"{what} is not base64: {exc}") from exc
    if len(raw) != HASH_SIZE or base64.b64encode(raw).decode("ascii") != text:
        raise MalformedError(f"{what} is not the canonical base64 of a {HASH_SIZE}-byte hash")
    return raw


def _size_field(obj: dict[str, Any], key: str) -> int:
    value = obj[key]
    _check_size(value, key)
    return int(value)


def _proof_fields(obj: Any, sizes: tuple[str, str]) -> tuple[int, int, tuple[bytes, ...]]:
    keys = {*sizes, "hashes"}
    if not isinstance(obj, dict) or set(obj) != keys:
        raise MalformedError(f"a proof is an object with exactly the keys {sorted(keys)}")
    hashes = obj["hashes"]
    if not isinstance(hashes, list) or len(hashes) > MAX_PROOF_HASHES:
        raise MalformedError(f"proof hashes must be a list of at most {MAX_PROOF_HASHES}")
    return (
        _size_field(obj, sizes[0]),
        _size_field(obj, sizes[1]),
        tuple(hash_from_b64(h, "proof hash") for h in hashes),
    )


def _b64(hashes: Sequence[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in hashes]


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """``{"index": i, "tree_size": n, "hashes": [base64, ...]}`` (LOG.md section 4)."""

    index: int
    tree_size: int
    hashes: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "tree_size": self.tree_size, "hashes": _b64(self.hashes)}

    @classmethod
    def from_dict(cls, obj: Any) -> InclusionProof:
        index, size, hashes = _proof_fields(obj, ("index", "tree_size"))
        return cls(index=index, tree_size=size, hashes=hashes)

    def verify(self, *, leaf: bytes, root: bytes) -> None:
        verify_inclusion(
            leaf=leaf, index=self.index, tree_size=self.tree_size, proof=self.hashes, root=root
        )


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """``{"old_size": m, "new_size": n, "hashes": [base64, ...]}`` (LOG.md section 4)."""

    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"old_size": self.old_size, "new_size": self.new_size, "hashes": _b64(self.hashes)}

    @classmethod
    def from_dict(cls, obj: Any) -> ConsistencyProof:
        old, new, hashes = _proof_fields(obj, ("old_size", "new_size"))
        return cls(old_size=old, new_size=new, hashes=hashes)

    def verify(self, *, old_root: bytes, new_root: bytes) -> None:
        verify_consistency(
            old_size=self.old_size,
            new_size=self.new_size,
            old_root=old_root,
            new_root=new_root,
            proof=self.hashes,
        )
