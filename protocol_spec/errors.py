"""The one exception hierarchy of Ostraca.

Every error carries a human ``message`` and a stable machine ``code`` (the server puts the
code in RFC 9457 problem+json, the CLI prints it). ``http_status`` is the status the registry
answers with; it lives here so the mapping is written once.

::

    OstracaError                       error              500
    ├── MalformedError                 malformed          422
    │   └── NonCanonicalError          non_canonical      422
    ├── VerificationError              verification_failed 422
    │   ├── SignatureError             bad_signature      422
    │   ├── UntrustedKeyError          untrusted_key      422
    │   ├── PayloadTypeError           wrong_payload_type 422
    │   ├── ChainError                 chain_broken       409
    │   │   └── RollbackError          rollback           409
    │   └── DigestMismatchError        digest_mismatch    422
    ├── AuthenticationError            unauthenticated    401
    ├── AccessDeniedError              access_denied      403
    │   ├── ScopeError                 out_of_scope       403
    │   ├── NotYetValidError           not_yet_valid      403
    │   ├── ExpiredError               expired            403
    │   └── RevokedError               revoked            403
    ├── NotFoundError                  not_found          404
    ├── ConflictError                  conflict           409
    ├── TooLargeError                  too_large          413
    ├── UnsupportedMediaTypeError      unsupported_media_type 415
    ├── RangeNotSatisfiableError       range_not_satisfiable 416
    ├── UnavailableError               unavailable        503
    └── InsufficientStorageError       insufficient_storage 507

The transparency log's (LOG.md section 9): ``MalformedNoteError`` (malformed_note) and
``MalformedCheckpointError`` (malformed_checkpoint) under MalformedError; ``ProofError``
(bad_proof) with ``InclusionProofError`` (bad_inclusion_proof) and ``ConsistencyProofError``
(bad_consistency_proof), ``StaleCheckpointError`` (stale_checkpoint) and ``EquivocationError``
(equivocation, 409) under VerificationError; ``WitnessQuorumError`` (witness_quorum) under
UntrustedKeyError. Encryption's (ENCRYPTION.md), under VerificationError:
``DecryptionError`` (decryption_failed) with ``WrongKeyError`` (wrong_key),
``WrongRecipientError`` (wrong_recipient) and ``MissingKeyError`` (missing_key).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import ClassVar


class OstracaError(Exception):
    """Root of every error Ostraca raises on purpose."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message} ({self.hint})"


class MalformedError(OstracaError):
    code = "malformed"
    http_status = 422
    title = "Malformed input"


class NonCanonicalError(MalformedError):
    code = "non_canonical"
    title = "Payload is not canonical JSON"


class VerificationError(OstracaError):
    code = "verification_failed"
    http_status = 422
    title = "Verification failed"


class SignatureError(VerificationError):
    code = "bad_signature"
    title = "Signature does not verify"


class UntrustedKeyError(VerificationError):
    code = "untrusted_key"
    title = "Signed by a key that is not trusted for this statement"


class PayloadTypeError(VerificationError):
    code = "wrong_payload_type"
    title = "Unexpected payload type"


class ChainError(VerificationError):
    code = "chain_broken"
    http_status = 409
    title = "Manifest hash chain is broken"


class RollbackError(ChainError):
    code = "rollback"
    title = "Manifest is older than one already seen"


class DigestMismatchError(VerificationError):
    code = "digest_mismatch"
    title = "Content does not match its digest"


class AuthenticationError(OstracaError):
    code = "unauthenticated"
    http_status = 401
    title = "Authentication required"


class AccessDeniedError(OstracaError):
    code = "access_denied"
    http_status = 403
    title = "Access denied"


class ScopeError(AccessDeniedError):
    code = "out_of_scope"
    title = "Grant does not cover this"


class NotYetValidError(AccessDeniedError):
    code = "not_yet_valid"
    title = "Grant is not valid yet"


class ExpiredError(AccessDeniedError):
    code = "expired"
    title = "Expired"


class RevokedError(AccessDeniedError):
    code = "revoked"
    title = "Grant revoked"


class NotFoundError(OstracaError):
    code = "not_found"
    http_status = 404
    title = "Not found"


class ConflictError(OstracaError):
    code = "conflict"
    http_status = 409
    title = "Conflict"


class TooLargeError(OstracaError):
    code = "too_large"
    http_status = 413
    title = "Too large"


class UnsupportedMediaTypeError(OstracaError):
    code = "unsupported_media_type"
    http_status = 415
    title = "Unsupported media type"


class RangeNotSatisfiableError(OstracaError):
    code = "range_not_satisfiable"
    http_status = 416
    title = "Range not satisfiable"


class UnavailableError(OstracaError):
    code = "unavailable"
    http_status = 503
    title = "Service unavailable"


class InsufficientStorageError(OstracaError):
    """The registry's blob store or database is full (ENOSPC, EDQUOT): nothing was written."""

    code = "insufficient_storage"
    http_status = 507
    title = "Insufficient storage"


# The transparency log's errors (LOG.md section 9).


class ProofError(VerificationError):
    """A Merkle proof does not prove what it claims."""

    code = "bad_proof"
    title = "Merkle proof does not verify"


class InclusionProofError(ProofError):
    code = "bad_inclusion_proof"
    title = "Inclusion proof does not verify"


class ConsistencyProofError(ProofError):
    code = "bad_consistency_proof"
    title = "Consistency proof does not verify"


class MalformedNoteError(MalformedError):
    code = "malformed_note"
    title = "Malformed signed note"


class MalformedCheckpointError(MalformedError):
    code = "malformed_checkpoint"
    title = "Malformed checkpoint"


class StaleCheckpointError(VerificationError):
    code = "stale_checkpoint"
    title = "Checkpoint is older than the maximum age"


class WitnessQuorumError(UntrustedKeyError):
    code = "witness_quorum"
    title = "Too few known witnesses cosigned the checkpoint"


class EquivocationError(VerificationError):
    """Two checkpoints signed by the same log that no consistency proof joins: a forked log.
    ``trusted`` and ``presented`` are both signed notes, exactly as received; with ``proof`` they
    are the evidence anyone can check."""

    code = "equivocation"
    http_status = 409
    title = "The log presented two inconsistent checkpoints"

    def __init__(
        self,
        message: str,
        *,
        trusted: bytes = b"",
        presented: bytes = b"",
        proof: Sequence[bytes] = (),
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.trusted = trusted
        self.presented = presented
        self.proof = tuple(proof)

    def evidence(self) -> str:
        lines = "".join(f"{base64.b64encode(h).decode()}\n" for h in self.proof) or "(empty)\n"
        return (
            f"checkpoint trusted before:\n{self.trusted.decode('utf-8', 'replace')}\n"
            f"checkpoint presented now:\n{self.presented.decode('utf-8', 'replace')}\n"
            f"consistency proof offered:\n{lines}"
        )


# End-to-end encryption's errors (ENCRYPTION.md).


class DecryptionError(VerificationError):
    code = "decryption_failed"
    title = "Encrypted content does not open"


class WrongKeyError(DecryptionError):
    code = "wrong_key"
    title = "Wrong decryption key"


class WrongRecipientError(DecryptionError):
    code = "wrong_recipient"
    title = "Wrapped key meant for another recipient"


class MissingKeyError(DecryptionError):
    code = "missing_key"
    title = "No data key for an encrypted column group"


def _all_subclasses(cls: type[OstracaError]) -> list[type[OstracaError]]:
    out: list[type[OstracaError]] = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


ERRORS_BY_CODE: dict[str, type[OstracaError]] = {c.code: c for c in _all_subclasses(OstracaError)}
"""Every error class by its stable code (a client rebuilds a typed error from problem+json)."""


def error_from_code(code: str, message: str, *, hint: str | None = None) -> OstracaError:
    """The typed error for ``code`` (unknown codes become a plain :class:`OstracaError`)."""
    return ERRORS_BY_CODE.get(code, OstracaError)(message, hint=hint)
