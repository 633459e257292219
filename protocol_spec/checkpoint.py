"""Log checkpoints (c2sp.org/tlog-checkpoint), their signatures, and the client's rules. LOG.md
sections 5 to 7; rules L1 to L13 are numbered as there.

A checkpoint is the note text ``<origin>\\n<size>\\n<base64 root>\\n`` (plus optional extension
lines). The registry signs it with its log key as a timestamped ``cosignature/v1`` note signature
whose key name is the origin, so the checkpoint carries the time it was signed and its age means
something. Witnesses add their own ``cosignature/v1`` lines (c2sp.org/tlog-witness).

The client rules, each a pure function (``now`` passed in):

* :func:`open_checkpoint` — the note is well formed, signed by the pinned log key, for that log's
  origin, not from the future, and cosigned by at least ``witness_quorum`` known witnesses;
* :func:`require_fresh` — it is at most ``max_age`` old (a registry or proxy freezing the client
  on an old view is caught here);
* :func:`verify_checkpoint_update` — a newer checkpoint is consistent with the one trusted so far,
  or both signed notes are the evidence of an :class:`EquivocationError`;
* :func:`verify_entry_inclusion` — an entry (the envelope bytes) is in the checkpoint's tree.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .errors import (
    ConflictError,
    ConsistencyProofError,
    EquivocationError,
    InclusionProofError,
    MalformedCheckpointError,
    MalformedError,
    RollbackError,
    StaleCheckpointError,
    UntrustedKeyError,
    VerificationError,
    WitnessQuorumError,
)
from .keys import SigningKey, VerifyKey
from .merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_PROOF_HASHES,
    MAX_TREE_SIZE,
    InclusionProof,
    hash_from_b64,
    leaf_hash,
    verify_consistency,
)
from .note import (
    COSIGNATURE_V1,
    MAX_NOTE_SIZE,
    Note,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    VerifiedSignature,
    verify_note,
)
from .verify import CLOCK_SKEW

DEFAULT_MAX_AGE = timedelta(hours=24)
"""A client refuses a checkpoint signed longer ago than this (issue 13: default 24 h)."""


def _hash(text: str, what: str) -> bytes:
    try:
        return hash_from_b64(text, f"checkpoint {what}")
    except MalformedError as exc:
        raise MalformedCheckpointError(exc.message) from exc


def _check_line(line: str, what: str) -> None:
    if not line or any(ord(c) < 0x20 for c in line):
        raise MalformedCheckpointError(f"checkpoint {what} must be a non-empty line")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log's origin, its size, its root, and opaque extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        for line in self.extensions:
            _check_line(line, "extension line")
        if isinstance(self.size, bool) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise MalformedCheckpointError(f"checkpoint size {self.size!r} is out of range")
        if len(self.root) != HASH_SIZE:
            raise MalformedCheckpointError(f"a checkpoint root is {HASH_SIZE} bytes")
        if self.size == 0 and self.root != EMPTY_ROOT:
            raise MalformedCheckpointError("an empty tree's root is the hash of the empty string")

    def text(self) -> str:
        """The note text: the bytes every log and witness signature covers."""
        head = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        return "".join(f"{line}\n" for line in (*head, *self.extensions))

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a note text strictly: three lines at least, canonical size and root."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise MalformedCheckpointError("a checkpoint is at least three newline-ended lines")
        origin, size, root, *extensions = lines[:-1]
        if not size.isascii() or not size.isdigit() or str(int(size)) != size:
            raise MalformedCheckpointError(f"checkpoint size {size!r} is not canonical decimal")
        return cls(
            origin=origin, size=int(size), root=_hash(root, "root"), extensions=tuple(extensions)
        )


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint whose signatures :func:`open_checkpoint` verified."""

    checkpoint: Checkpoint
    note: bytes
    """The signed note exactly as received: what a client pins and shows as evidence."""
    signed_at: datetime
    """When the log signed it (its ``cosignature/v1`` timestamp)."""
    witnesses: tuple[VerifiedSignature, ...]
    """The known witnesses whose cosignatures verified, with their timestamps."""


def log_verifier(origin: str, key: VerifyKey) -> NoteVerifier:
    """The note verifier of a log: key name = origin, timestamped signatures."""
    return NoteVerifier(name=origin, key=key, sig_type=COSIGNATURE_V1)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise MalformedError("now must be timezone-aware")
    return now


def cosign_checkpoint(
    checkpoint: Checkpoint, *, signer: NoteSigner, now: datetime
) -> NoteSignature:
    """A ``cosignature/v1`` line over ``checkpoint`` at ``now`` (a witness's, or the log's own)."""
    if signer.sig_type != COSIGNATURE_V1:
        raise MalformedError("checkpoints are signed with cosignature/v1 keys")
    return signer.sign(checkpoint.text(), timestamp=int(_aware(now).timestamp()))


def sign_checkpoint(checkpoint: Checkpoint, *, key: SigningKey, now: datetime) -> bytes:
    """The log's signed note for ``checkpoint``: one timestamped signature by the log key."""
    signer = NoteSigner(name=checkpoint.origin, key=key, sig_type=COSIGNATURE_V1)
    line = cosign_checkpoint(checkpoint, signer=signer, now=now)
    return Note(text=checkpoint.text(), signatures=(line,)).to_bytes()


def open_checkpoint(
    data: bytes,
    *,
    log: NoteVerifier,
    now: datetime,
    witnesses: Sequence[NoteVerifier] = (),
    witness_quorum: int = 0,
) -> SignedCheckpoint:
    """Verify a signed checkpoint against the pinned ``log`` key and the known ``witnesses``.

    L1. The note parses strictly (MalformedNoteError).
    L2. Every signature by a known key verifies (SignatureError); unknown ones are ignored.
    L3. The log key signed it (UntrustedKeyError: e.g. a swapped log key).
    L4. The text is a checkpoint for the log's own origin (MalformedCheckpointError,
        UntrustedKeyError).
    L5. The log's timestamp is not in the verifier's future (VerificationError).
    L6. At least ``witness_quorum`` distinct known witnesses cosigned it (WitnessQuorumError).
    """
    for key in (log, *witnesses):
        if key.sig_type != COSIGNATURE_V1:
            raise MalformedError(f"key {key} must be a cosignature/v1 (timestamped) key")
    if not 0 <= witness_quorum <= len(witnesses):
        raise MalformedError(f"a quorum of {witness_quorum} of {len(witnesses)} witnesses")
    note = Note.from_bytes(data)  # L1
    verified = verify_note(note, [log, *witnesses])  # L2
    by_log = [v for v in verified if v.verifier == log]
    if not by_log or by_log[0].timestamp is None:  # L3
        raise UntrustedKeyError(f"checkpoint is not signed by the log key {log}")
    checkpoint = Checkpoint.from_text(note.text)  # L4
    if checkpoint.origin != log.name:
        raise UntrustedKeyError(f"checkpoint of log {checkpoint.origin!r}, not of {log.name!r}")
    try:
        signed_at = datetime.fromtimestamp(by_log[0].timestamp, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise VerificationError(
            f"checkpoint timestamp {by_log[0].timestamp} is out of range"
        ) from exc
    if signed_at > _aware(now) + CLOCK_SKEW:  # L5
        raise VerificationError(
            f"checkpoint was signed in the future ({signed_at:%Y-%m-%dT%H:%M:%SZ})"
        )
    cosigned = tuple(v for v in verified if v.verifier != log)
    if len(cosigned) < witness_quorum:  # L6
        names = ", ".join(str(v.verifier) for v in cosigned) or "none"
        raise WitnessQuorumError(
            f"checkpoint cosigned by {len(cosigned)} known witnesses ({names}), "
            f"{witness_quorum} required"
        )
    return SignedCheckpoint(
        checkpoint=checkpoint, note=data, signed_at=signed_at, witnesses=cosigned
    )


def require_fresh(
    signed: SignedCheckpoint, *, now: datetime, max_age: timedelta = DEFAULT_MAX_AGE
) -> None:
    """L7. Raise :class:`StaleCheckpointError` if the log signed ``signed`` more than
    ``max_age`` ago: a live log re-signs at least hourly, so an old checkpoint is a frozen view."""
    age = _aware(now) - signed.signed_at
    if age > max_age:
        raise StaleCheckpointError(
            f"checkpoint of {signed.checkpoint.origin} at size {signed.checkpoint.size} was signed "
            f"{age} ago ({signed.signed_at:%Y-%m-%dT%H:%M:%SZ}), more than the maximum {max_age}",
            hint="the registry or a proxy in front of it may be serving a frozen view",
        )


def verify_checkpoint_update(
    *, trusted: SignedCheckpoint | None, presented: SignedCheckpoint, proof: Sequence[bytes]
) -> SignedCheckpoint:
    """The checkpoint to keep after ``presented``, given the one ``trusted`` so far (None on
    first use) and a consistency proof from the trusted size to the presented one.

    L8. First use, or a trusted empty tree: nothing to prove (the proof must be empty).
    L9. A smaller tree than the trusted one is a rollback (RollbackError).
    L10. The same size with another root, or a proof that does not verify, is equivocation
         (EquivocationError carrying both signed notes and the proof).
    L13. Of two checkpoints of the same tree the later-signed is kept.
    """
    new = presented.checkpoint
    if trusted is not None and trusted.checkpoint.origin != new.origin:
        raise MalformedError(
            f"checkpoints of two logs: {trusted.checkpoint.origin!r}, {new.origin!r}"
        )
    if trusted is None or trusted.checkpoint.size == 0:  # L8
        if proof:
            raise ConsistencyProofError("nothing to prove from the empty tree: the proof is empty")
        return presented
    old = trusted.checkpoint
    if new.size < old.size:  # L9
        raise RollbackError(
            f"log {new.origin} presented size {new.size} after size {old.size} was seen"
        )
    if new.size == old.size and new.root == old.root:  # L13: the same tree
        if proof:
            raise ConsistencyProofError("the same tree needs an empty consistency proof")
        return trusted if presented.signed_at < trusted.signed_at else presented
    try:  # L10
        verify_consistency(
            old_size=old.size, new_size=new.size, old_root=old.root, new_root=new.root, proof=proof
        )
    except ConsistencyProofError as exc:
        raise EquivocationError(
            f"log {new.origin} cannot prove size {new.size} consistent with size {old.size}: {exc}",
            trusted=trusted.note,
            presented=presented.note,
            proof=proof,
        ) from exc
    return presented


def verify_entry_inclusion(entry: bytes, *, proof: InclusionProof, checkpoint: Checkpoint) -> None:
    """L11. Raise :class:`InclusionProofError` unless ``entry`` (the envelope bytes, byte for
    byte) is entry ``proof.index`` of the tree ``checkpoint`` signs."""
    if proof.tree_size != checkpoint.size:
        raise InclusionProofError(
            f"inclusion proof is for tree size {proof.tree_size}, "
            f"the checkpoint is for {checkpoint.size}"
        )
    proof.verify(leaf=leaf_hash(entry), root=checkpoint.root)


@dataclass(frozen=True, slots=True)
class WitnessRequest:
    """The body of a tlog-witness ``add-checkpoint`` request."""

    old_size: int
    proof: tuple[bytes, ...]
    note: bytes

    def to_bytes(self) -> bytes:
        lines = "".join(f"{base64.b64encode(h).decode()}\n" for h in self.proof)
        return f"old {self.old_size}\n{lines}\n".encode() + self.note

    @classmethod
    def from_bytes(cls, body: bytes) -> WitnessRequest:
        """Parse strictly: ``old N``, at most 63 proof hashes, a blank line, the signed note."""
        if len(body) > MAX_NOTE_SIZE + 64 * 64:
            raise MalformedCheckpointError("witness request is too large")
        head, sep, note = body.partition(b"\n\n")
        lines = head.decode("ascii", "replace").split("\n")
        old = lines[0].removeprefix("old ")
        if not sep or old == lines[0] or not old.isdigit() or str(int(old)) != old:
            raise MalformedCheckpointError("a witness request starts with 'old <size>' and a proof")
        if len(lines) > MAX_PROOF_HASHES or int(old) > MAX_TREE_SIZE:
            raise MalformedCheckpointError("witness request proof or size is out of range")
        proof = tuple(_hash(h, "consistency proof hash") for h in lines[1:])
        return cls(old_size=int(old), proof=proof, note=note)


def check_witness_request(
    *, latest: SignedCheckpoint | None, request: WitnessRequest, presented: SignedCheckpoint
) -> SignedCheckpoint:
    """A witness's checks (tlog-witness add-checkpoint) before it cosigns ``presented``, given the
    ``latest`` checkpoint it cosigned for that log; returns the checkpoint to record.
    ConflictError (409) when ``old_size`` is not the witness's size, MalformedError (400) when it
    exceeds the checkpoint's, EquivocationError / ConsistencyProofError (422) otherwise."""
    known = latest.checkpoint.size if latest is not None else 0
    if request.old_size > presented.checkpoint.size:
        raise MalformedError(f"old size {request.old_size} exceeds the checkpoint size")
    if request.old_size != known:
        raise ConflictError(f"old size {request.old_size}, but the witness last cosigned {known}")
    return verify_checkpoint_update(trusted=latest, presented=presented, proof=request.proof)
