"""Checkpoints and the client's log rules, attacked: forged, swapped-key, stale, future-dated,
forked and rolled-back checkpoints, unknown witnesses, and entries that are not in the tree."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from ostraca.protocol_spec import (
    ConflictError,
    MalformedError,
    RollbackError,
    SignatureError,
    SigningKey,
    UntrustedKeyError,
    VerificationError,
)
from ostraca.protocol_spec.checkpoint import (
    DEFAULT_MAX_AGE,
    Checkpoint,
    SignedCheckpoint,
    WitnessRequest,
    check_witness_request,
    cosign_checkpoint,
    log_verifier,
    open_checkpoint,
    require_fresh,
    sign_checkpoint,
    verify_checkpoint_update,
    verify_entry_inclusion,
)
from ostraca.protocol_spec.errors import (
    ConsistencyProofError,
    EquivocationError,
    InclusionProofError,
    MalformedCheckpointError,
    MalformedNoteError,
    StaleCheckpointError,
    WitnessQuorumError,
)
from ostraca.protocol_spec.merkle import EMPTY_ROOT, InclusionProof, MerkleTree, leaf_hash
from ostraca.protocol_spec.note import COSIGNATURE_V1, Note, NoteSignature, NoteSigner, NoteVerifier

ORIGIN = "registry.test/log"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LOG_KEY = SigningKey.from_seed(bytes([1]) * 32)
LOG = log_verifier(ORIGIN, LOG_KEY.public)
OTHER_KEY = SigningKey.from_seed(bytes([2]) * 32)
W = [
    NoteSigner(
        name=f"w{n}.test", key=SigningKey.from_seed(bytes([10 + n]) * 32), sig_type=COSIGNATURE_V1
    )
    for n in range(3)
]
ENTRIES = [f"entry {i}".encode() for i in range(20)]
TREE = MerkleTree(leaf_hash(e) for e in ENTRIES)


def _cp(size: int, tree: MerkleTree = TREE) -> Checkpoint:
    return Checkpoint(origin=ORIGIN, size=size, root=tree.root(size))


def _signed(
    size: int, *, at: datetime = T0, tree: MerkleTree = TREE, key: SigningKey = LOG_KEY
) -> bytes:
    return sign_checkpoint(_cp(size, tree), key=key, now=at)


def _open(
    data: bytes, *, witnesses: Sequence[NoteVerifier] = (), witness_quorum: int = 0
) -> SignedCheckpoint:
    return open_checkpoint(
        data,
        log=LOG,
        now=T0 + timedelta(minutes=1),
        witnesses=witnesses,
        witness_quorum=witness_quorum,
    )


def _cosigned(size: int, witnesses: list[NoteSigner]) -> bytes:
    cosigs = [cosign_checkpoint(_cp(size), signer=w, now=T0) for w in witnesses]
    return Note.from_bytes(_signed(size)).with_signatures(*cosigs).to_bytes()


def test_checkpoint_text_round_trip() -> None:
    cp = Checkpoint(origin=ORIGIN, size=12, root=TREE.root(12), extensions=("ext one",))
    assert cp.text() == f"{ORIGIN}\n12\n{base64.b64encode(TREE.root(12)).decode()}\next one\n"
    assert Checkpoint.from_text(cp.text()) == cp


ROOT_B64 = base64.b64encode(TREE.root(3)).decode()
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# The same 32 bytes with one of the two unused bits of the last character set.
NON_CANONICAL = ROOT_B64[:-2] + B64[B64.index(ROOT_B64[-2]) ^ 1] + "="
BAD_TEXTS = {
    "two lines": f"{ORIGIN}\n3\n",
    "no final newline": f"{ORIGIN}\n3\n{ROOT_B64}",
    "empty origin": f"\n3\n{ROOT_B64}\n",
    "leading zero": f"{ORIGIN}\n03\n{ROOT_B64}\n",
    "signed size": f"{ORIGIN}\n+3\n{ROOT_B64}\n",
    "negative size": f"{ORIGIN}\n-3\n{ROOT_B64}\n",
    "unicode digits": f"{ORIGIN}\n\u0663\n{ROOT_B64}\n",
    "size beyond 2**63-1": f"{ORIGIN}\n{2**63}\n{ROOT_B64}\n",
    "short root": f"{ORIGIN}\n3\nAAAA\n",
    "root not base64": f"{ORIGIN}\n3\n{ROOT_B64[:-1]}!\n",
    "non-canonical root": f"{ORIGIN}\n3\n{NON_CANONICAL}\n",
    "empty extension line": f"{ORIGIN}\n3\n{ROOT_B64}\n\n",
    "empty tree, other root": f"{ORIGIN}\n0\n{ROOT_B64}\n",
    "control character": f"{ORIGIN}\x07\n3\n{ROOT_B64}\n",
}


@pytest.mark.parametrize("text", BAD_TEXTS.values(), ids=BAD_TEXTS.keys())
def test_malformed_checkpoint_texts_are_refused(text: str) -> None:
    with pytest.raises(MalformedCheckpointError):
        Checkpoint.from_text(text)


def test_empty_tree_checkpoint() -> None:
    cp = Checkpoint(origin=ORIGIN, size=0, root=EMPTY_ROOT)
    assert Checkpoint.from_text(cp.text()) == cp


def test_open_checkpoint() -> None:
    signed = _open(_signed(7))
    assert signed.checkpoint == _cp(7)
    assert signed.signed_at == T0
    assert signed.witnesses == ()
    assert LOG.to_vkey().startswith(f"{ORIGIN}+")


def test_swapped_log_key_is_refused() -> None:
    """A registry (or proxy) that signs with another key under the same name is not the log."""
    with pytest.raises(UntrustedKeyError):
        _open(_signed(7, key=OTHER_KEY))


def test_forged_log_signature_is_refused() -> None:
    note = Note.from_bytes(_signed(7))
    sig = note.signatures[0]
    forged = NoteSignature(
        name=sig.name, key_id=sig.key_id, signature=sig.signature[:8] + bytes(64)
    )
    with pytest.raises(SignatureError):
        _open(Note(text=note.text, signatures=(forged,)).to_bytes())


def test_altered_checkpoint_text_is_refused() -> None:
    data = _signed(7).replace(b"\n7\n", b"\n8\n")
    with pytest.raises(SignatureError):
        _open(data)


def test_checkpoint_of_another_origin_is_refused() -> None:
    other = Checkpoint(origin="elsewhere.test/log", size=3, root=TREE.root(3))
    signer = NoteSigner(name=ORIGIN, key=LOG_KEY, sig_type=COSIGNATURE_V1)
    line = cosign_checkpoint(other, signer=signer, now=T0)
    with pytest.raises(UntrustedKeyError):
        _open(Note(text=other.text(), signatures=(line,)).to_bytes())


def test_note_that_is_not_a_checkpoint_is_refused() -> None:
    signer = NoteSigner(name=ORIGIN, key=LOG_KEY, sig_type=COSIGNATURE_V1)
    text = f"{ORIGIN}\nnot a size\n"
    note = Note(text=text, signatures=(signer.sign(text, timestamp=int(T0.timestamp())),))
    with pytest.raises(MalformedCheckpointError):
        _open(note.to_bytes())


def test_garbage_is_refused() -> None:
    with pytest.raises(MalformedNoteError):
        _open(b"\x00garbage")


def test_future_checkpoint_is_refused() -> None:
    with pytest.raises(VerificationError):
        _open(_signed(7, at=T0 + timedelta(hours=1)))


def test_timestamp_beyond_any_date_is_refused() -> None:
    signer = NoteSigner(name=ORIGIN, key=LOG_KEY, sig_type=COSIGNATURE_V1)
    text = _cp(7).text()
    note = Note(text=text, signatures=(signer.sign(text, timestamp=2**62),))
    with pytest.raises(VerificationError):
        _open(note.to_bytes())


def test_naive_now_is_refused() -> None:
    with pytest.raises(MalformedError):
        open_checkpoint(_signed(7), log=LOG, now=T0.replace(tzinfo=None))
    with pytest.raises(MalformedError):
        require_fresh(_open(_signed(7)), now=T0.replace(tzinfo=None))


def test_plain_log_key_is_a_configuration_error() -> None:
    plain = NoteVerifier(name=ORIGIN, key=LOG_KEY.public)
    with pytest.raises(MalformedError):
        open_checkpoint(_signed(7), log=plain, now=T0)
    with pytest.raises(MalformedError):
        open_checkpoint(_signed(7), log=LOG, witnesses=[plain], now=T0)


def test_witness_quorum() -> None:
    verifiers = [w.verifier for w in W]
    data = _cosigned(7, W[:2])
    signed = _open(data, witnesses=verifiers, witness_quorum=2)
    assert [v.verifier for v in signed.witnesses] == verifiers[:2]
    with pytest.raises(WitnessQuorumError):
        _open(data, witnesses=verifiers, witness_quorum=3)
    with pytest.raises(MalformedError):
        _open(data, witnesses=verifiers[:1], witness_quorum=2)


def test_unknown_witness_does_not_count() -> None:
    stranger = NoteSigner(name=W[0].name, key=OTHER_KEY, sig_type=COSIGNATURE_V1)
    data = _cosigned(7, [stranger])
    with pytest.raises(WitnessQuorumError):
        _open(data, witnesses=[W[0].verifier], witness_quorum=1)


def test_forged_witness_cosignature_refuses_the_checkpoint() -> None:
    note = Note.from_bytes(_cosigned(7, [W[0]]))
    sig = note.signatures[1]
    forged = NoteSignature(
        name=sig.name, key_id=sig.key_id, signature=(1).to_bytes(8, "big") + sig.signature[8:]
    )
    data = Note(text=note.text, signatures=(note.signatures[0], forged)).to_bytes()
    with pytest.raises(SignatureError):
        _open(data, witnesses=[W[0].verifier], witness_quorum=1)


def test_witness_cosignature_of_another_checkpoint_refuses_it() -> None:
    line = cosign_checkpoint(_cp(6), signer=W[0], now=T0)
    data = Note.from_bytes(_signed(7)).with_signatures(line).to_bytes()
    with pytest.raises(SignatureError):
        _open(data, witnesses=[W[0].verifier], witness_quorum=1)


def test_stale_checkpoint_is_refused() -> None:
    signed = _open(_signed(7))
    require_fresh(signed, now=T0 + DEFAULT_MAX_AGE)
    with pytest.raises(StaleCheckpointError) as err:
        require_fresh(signed, now=T0 + DEFAULT_MAX_AGE + timedelta(seconds=1))
    assert err.value.code == "stale_checkpoint"
    with pytest.raises(StaleCheckpointError):
        require_fresh(signed, now=T0 + timedelta(hours=2), max_age=timedelta(hours=1))


def test_consistent_update_is_accepted() -> None:
    old, new = _open(_signed(5)), _open(_signed(13))
    assert verify_checkpoint_update(trusted=None, presented=old, proof=[]) == old
    assert (
        verify_checkpoint_update(trusted=old, presented=new, proof=TREE.consistency_proof(5, 13))
        == new
    )


def test_same_tree_keeps_the_later_signature() -> None:
    early, late = _open(_signed(5)), _open(_signed(5, at=T0 - timedelta(hours=1)))
    assert verify_checkpoint_update(trusted=early, presented=late, proof=[]) == early
    assert verify_checkpoint_update(trusted=late, presented=early, proof=[]) == early


def test_same_tree_with_a_proof_is_refused() -> None:
    with pytest.raises(ConsistencyProofError):
        verify_checkpoint_update(
            trusted=_open(_signed(5)), presented=_open(_signed(5)), proof=[EMPTY_ROOT]
        )


def test_update_from_the_empty_tree() -> None:
    empty = _open(_signed(0))
    new = _open(_signed(4))
    assert verify_checkpoint_update(trusted=empty, presented=new, proof=[]) == new
    with pytest.raises(ConsistencyProofError):
        verify_checkpoint_update(trusted=empty, presented=new, proof=[EMPTY_ROOT])
    with pytest.raises(ConsistencyProofError):
        verify_checkpoint_update(trusted=None, presented=new, proof=[EMPTY_ROOT])


FORK = MerkleTree(leaf_hash(e) for e in [*ENTRIES[:5], b"a different entry 5", *ENTRIES[6:]])


def test_fork_is_equivocation_with_both_notes_as_evidence() -> None:
    trusted, forked = _open(_signed(8)), _open(_signed(13, tree=FORK))
    for proof in (TREE.consistency_proof(8, 13), FORK.consistency_proof(8, 13)):
        with pytest.raises(EquivocationError) as err:
            verify_checkpoint_update(trusted=trusted, presented=forked, proof=proof)
        assert err.value.trusted == trusted.note
        assert err.value.presented == forked.note
        assert trusted.note.decode() in err.value.evidence()
        assert forked.note.decode() in err.value.evidence()
        assert err.value.http_status == 409


def test_same_size_other_root_is_equivocation() -> None:
    with pytest.raises(EquivocationError):
        verify_checkpoint_update(
            trusted=_open(_signed(9)), presented=_open(_signed(9, tree=FORK)), proof=[]
        )


def test_bad_consistency_proof_is_refused() -> None:
    proof = TREE.consistency_proof(5, 13)
    with pytest.raises(EquivocationError):
        verify_checkpoint_update(
            trusted=_open(_signed(5)), presented=_open(_signed(13)), proof=proof[:-1]
        )


def test_rollback_is_refused() -> None:
    with pytest.raises(RollbackError):
        verify_checkpoint_update(trusted=_open(_signed(13)), presented=_open(_signed(5)), proof=[])


def test_checkpoints_of_two_logs_are_refused() -> None:
    other_log_key = SigningKey.from_seed(bytes([3]) * 32)
    other = Checkpoint(origin="other.test/log", size=5, root=TREE.root(5))
    data = sign_checkpoint(other, key=other_log_key, now=T0)
    other_signed = open_checkpoint(
        data, log=log_verifier("other.test/log", other_log_key.public), now=T0
    )
    with pytest.raises(MalformedError):
        verify_checkpoint_update(trusted=_open(_signed(5)), presented=other_signed, proof=[])


def test_entry_inclusion() -> None:
    cp = _cp(13)
    proof = InclusionProof(index=4, tree_size=13, hashes=tuple(TREE.inclusion_proof(4, 13)))
    verify_entry_inclusion(ENTRIES[4], proof=proof, checkpoint=cp)
    for entry in (ENTRIES[5], ENTRIES[4] + b" ", ENTRIES[4][:-1]):
        with pytest.raises(InclusionProofError):
            verify_entry_inclusion(entry, proof=proof, checkpoint=cp)
    with pytest.raises(InclusionProofError):
        verify_entry_inclusion(ENTRIES[4], proof=proof, checkpoint=_cp(14))
    with pytest.raises(InclusionProofError):
        verify_entry_inclusion(ENTRIES[4], proof=proof, checkpoint=_cp(13, FORK))


def test_witness_request_round_trip() -> None:
    request = WitnessRequest(
        old_size=5, proof=tuple(TREE.consistency_proof(5, 13)), note=_signed(13)
    )
    body = request.to_bytes()
    assert body.startswith(b"old 5\n")
    assert WitnessRequest.from_bytes(body) == request
    empty = WitnessRequest(old_size=0, proof=(), note=_signed(13))
    assert WitnessRequest.from_bytes(empty.to_bytes()) == empty


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"old 5\n",
        b"new 5\n\nnote",
        b"old 05\n\nnote",
        b"old -1\n\nnote",
        b"old 5 \n\nnote",
        b"old 9223372036854775808\n\nnote",
        b"old 5\nAAAA\n\nnote",
        b"old 5\n" + b"".join(base64.b64encode(EMPTY_ROOT) + b"\n" for _ in range(64)) + b"\nnote",
        b"old 5\n" + b"x" * (300 * 1024) + b"\n\nnote",
    ],
    ids=[
        "empty",
        "no blank line",
        "not old",
        "leading zero",
        "negative",
        "trailing space",
        "size beyond 2**63-1",
        "short hash",
        "64 proof lines",
        "oversized",
    ],
)
def test_malformed_witness_requests_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedCheckpointError):
        WitnessRequest.from_bytes(body)


def test_witness_checks() -> None:
    five, thirteen = _open(_signed(5)), _open(_signed(13))
    proof = tuple(TREE.consistency_proof(5, 13))

    def request(old: int, p: tuple[bytes, ...] = proof) -> WitnessRequest:
        return WitnessRequest(old_size=old, proof=p, note=thirteen.note)

    assert check_witness_request(latest=five, request=request(5), presented=thirteen) == thirteen
    assert check_witness_request(latest=None, request=request(0, ()), presented=five) == five
    with pytest.raises(ConflictError):
        check_witness_request(latest=five, request=request(4), presented=thirteen)
    with pytest.raises(ConflictError):
        check_witness_request(latest=None, request=request(5), presented=thirteen)
    with pytest.raises(MalformedError):
        check_witness_request(latest=five, request=request(14), presented=thirteen)
    with pytest.raises(ConsistencyProofError):
        check_witness_request(latest=None, request=request(0), presented=thirteen)
    with pytest.raises(EquivocationError):
        check_witness_request(latest=five, request=request(5, proof[1:]), presented=thirteen)
