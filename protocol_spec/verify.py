"""Verification algorithms: bytes (or a parsed envelope) in, a verified statement out, or raise.

Pure functions: no I/O; time is passed in as ``now``. Each check carries the number it has in
SPEC.md section 5 ("Verification"), in order. Signing lives here too, so the bytes that are
signed and the bytes that are checked come from the same function (:meth:`Statement.to_payload`).
"""

from __future__ import annotations

import gc
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from .canonical import parse_canonical
from .envelope import Envelope, require_signature, sign_envelope, verify_envelope
from .errors import (
    ChainError,
    ExpiredError,
    NotYetValidError,
    RevokedError,
    RollbackError,
    ScopeError,
    UntrustedKeyError,
    VerificationError,
)
from .keys import SigningKey, VerifyKey
from .models import (
    AccessGrant,
    AccessRequest,
    DatasetManifest,
    KeyRotation,
    Revocation,
    Statement,
    TrainingAttestation,
)

CLOCK_SKEW = timedelta(minutes=5)
"""A statement created more than this far in the verifier's future is refused."""

S = TypeVar("S", bound=Statement)
T = TypeVar("T", bound=Statement)


def sign_statement(statement: Statement, keys: list[SigningKey]) -> Envelope:
    """Sign ``statement``'s canonical payload with each of ``keys``."""
    return sign_envelope(statement.PAYLOAD_TYPE, statement.to_payload(), keys)


@dataclass(frozen=True, slots=True)
class Verified(Generic[T]):
    """A statement that passed verification, its id, and the key that signed it."""

    statement: T
    digest: str
    signer: VerifyKey


_GC_PAUSE_BYTES = 1 << 20


@contextmanager
def _gc_paused(size: int) -> Iterator[None]:
    """Pause the cyclic garbage collector while a large payload becomes objects.

    Parsing and validating a 1,000,000-shard manifest allocates millions of acyclic objects;
    the collector's repeated full scans cost about a third of the time and find nothing.
    """
    pause = size >= _GC_PAUSE_BYTES and gc.isenabled()
    if pause:
        gc.disable()
    try:
        yield
    finally:
        if pause:
            gc.enable()


def _open(envelope: Envelope, model: type[S], trusted: Mapping[str, VerifyKey]) -> Verified[S]:
    # Check 1: the payload type is the one this statement is signed under.
    # Check 2: a signature by a trusted key verifies over PAE(payloadType, payload).
    signer = verify_envelope(envelope, payload_type=model.PAYLOAD_TYPE, trusted=dict(trusted))
    with _gc_paused(len(envelope.payload)):
        # Check 3: the payload is canonical JSON (RFC 8785), with no duplicate keys or floats.
        obj = parse_canonical(envelope.payload)
        # Check 4: the payload is a valid statement of this type (fields, types, limits).
        statement = model.from_json_obj(obj)
    return Verified(statement=statement, digest=envelope.digest, signer=signer)


def _names_signer(signer: VerifyKey, named: str, message: str) -> None:
    """The statement names (as its publisher, requester, trainer or old key) the key that
    signed it."""
    if named != signer.keyid:
        raise UntrustedKeyError(message)


def _not_from_future(created: datetime, now: datetime, what: str) -> None:
    if created > now + CLOCK_SKEW:
        raise VerificationError(f"{what} was created in the future ({created:%Y-%m-%dT%H:%M:%SZ})")


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The newest version of a dataset a verifier trusts: all that check M8 needs of it."""

    dataset: str
    version: int
    """``0`` for a dataset with no version yet."""
    digest: str | None
    """The manifest's id; ``None`` only for version 0."""

    @classmethod
    def of(cls, verified: Verified[DatasetManifest]) -> ChainHead:
        return cls(
            dataset=verified.statement.dataset,
            version=verified.statement.version,
            digest=verified.digest,
        )

    @classmethod
    def empty(cls, dataset: str) -> ChainHead:
        """A dataset not published yet: its next version is 1 (whose ``previous`` is null)."""
        return cls(dataset=dataset, version=0, digest=None)


def verify_link(manifest: DatasetManifest, digest: str, *, previous: ChainHead) -> None:
    """Check M8 of SPEC.md 5.1: manifest ``digest`` continues the chain whose head is
    ``previous`` (or is that head itself)."""
    m, p = manifest, previous
    if p.dataset != m.dataset:
        raise ChainError(f"previous manifest is for {p.dataset}, not {m.dataset}")
    if m.version < p.version:
        raise RollbackError(
            f"{m.dataset} version {m.version} is older than trusted version {p.version}"
        )
    if m.version == p.version and digest != p.digest:
        raise ChainError(f"two different manifests claim {m.dataset} version {m.version}")
    if m.version == p.version + 1 and m.previous != p.digest:
        raise ChainError(
            f"{m.dataset} version {m.version} does not link to trusted version {p.version}"
        )
    if m.version > p.version + 1:
        raise ChainError(
            f"{m.dataset} version {m.version} does not follow version {p.version}: versions "
            f"{p.version + 1}..{m.version - 1} come first"
        )


RetiredKeys = Mapping[str, tuple[VerifyKey, datetime]]
"""Keys rotated away from a namespace, each with the time of its rotation (SPEC.md 5.5)."""


def _namespace_trust(
    publisher_keys: Mapping[str, VerifyKey], retired: RetiredKeys | None
) -> dict[str, VerifyKey]:
    """The keys check 2 trusts for a namespace: its current keys and its retired ones."""
    trusted = {k: key for k, (key, _until) in (retired or {}).items()}
    trusted.update(publisher_keys)
    return trusted


def _not_after_rotation(
    v: Verified[S],
    created: datetime,
    publisher_keys: Mapping[str, VerifyKey],
    retired: RetiredKeys | None,
    *,
    what: str,
) -> None:
    """A statement signed by a retired key of the namespace was created no later than that
    key's rotation (M4, C4, D4)."""
    signer = v.signer.keyid
    if retired and signer not in publisher_keys and created > retired[signer][1]:
        raise UntrustedKeyError(
            f"{what} is signed by key {signer[:16]}…, created after that key was rotated away "
            f"({retired[signer][1]:%Y-%m-%dT%H:%M:%SZ})",
            hint="a rotated key signs nothing new: this statement may be forged with an old "
            "(perhaps stolen) key; report it to the publisher",
        )


def verify_manifest(
    envelope: Envelope,
    *,
    publisher_keys: Mapping[str, VerifyKey],
    now: datetime,
    dataset: str | None = None,
    previous: Verified[DatasetManifest] | ChainHead | None = None,
    retired: RetiredKeys | None = None,
) -> Verified[DatasetManifest]:
    """Verify a dataset manifest (SPEC.md 5.1).

    ``publisher_keys`` are the keys trusted for the dataset's namespace. ``previous`` is the
    newest manifest of the same dataset the caller already trusts, if any: a lower version is a
    rollback, the same version with another digest or a successor that does not link to it is a
    fork, and a gap must be closed by verifying the intermediate versions first (M8,
    :func:`verify_link`). A :class:`ChainHead` stands for the previous manifest where only its
    place in the chain is known (a registry's latest version). ``retired`` keys of the
    namespace verify only manifests created no later than their rotation.
    """
    v = _open(envelope, DatasetManifest, _namespace_trust(publisher_keys, retired))  # M1–M4
    m = v.statement
    # M4: a rotated key signs nothing new.
    _not_after_rotation(
        v, m.created, publisher_keys, retired, what=f"{m.dataset} version {m.version}"
    )
    # M5: the manifest names the key that signed it.
    _names_signer(v.signer, m.publisher, "manifest names a publisher key other than its signer")
    # M6: it is the dataset the caller asked for.
    if dataset is not None and m.dataset != dataset:
        raise ScopeError(f"manifest is for {m.dataset}, not {dataset}")
    # M7: not created in the verifier's future.
    _not_from_future(m.created, now, "manifest")
    # M8: the hash chain against the newest trusted version.
    if previous is not None:
        verify_link(
            m,
            v.digest,
            previous=previous if isinstance(previous, ChainHead) else ChainHead.of(previous),
        )
    return v


def verify_chain(
    envelopes: list[Envelope],
    *,
    publisher_keys: Mapping[str, VerifyKey],
    now: datetime,
    dataset: str,
    trusted: Verified[DatasetManifest] | ChainHead | None = None,
    retired: RetiredKeys | None = None,
) -> list[Verified[DatasetManifest]]:
    """Walk consecutive manifests from ``trusted`` (or version 1): every link, in order (the
    last is the newest), each verified by :func:`verify_manifest` against the one before."""
    links: list[Verified[DatasetManifest]] = []
    current = trusted
    for env in envelopes:
        current = verify_manifest(
            env,
            publisher_keys=publisher_keys,
            now=now,
            dataset=dataset,
            previous=current,
            retired=retired,
        )
        links.append(current)
    return links


class GrantTerms(Protocol):
    """What checks G8 and G10–G12 read of a grant: an :class:`AccessGrant`, or a registry's
    record of one it verified when it stored it."""

    @property
    def min_version(self) -> int: ...
    @property
    def max_version(self) -> int | None: ...
    @property
    def not_before(self) -> datetime: ...
    @property
    def expires(self) -> datetime: ...


def open_grant(
    envelope: Envelope, *, publisher_keys: Mapping[str, VerifyKey]
) -> Verified[AccessGrant]:
    """Checks G1–G5 of SPEC.md 5.2: a valid grant signed by one of ``publisher_keys``, naming
    the key that signed it. What it grants is checked by :func:`verify_grant`."""
    v = _open(envelope, AccessGrant, publisher_keys)  # G1–G4
    # G5: the grant names the key that signed it.
    _names_signer(
        v.signer, v.statement.publisher, "grant names a publisher key other than its signer"
    )
    return v


def check_grant_version(grant: GrantTerms, version: int) -> None:
    """Check G8 of SPEC.md 5.2: the grant covers dataset version ``version``."""
    if version < grant.min_version or (
        grant.max_version is not None and version > grant.max_version
    ):
        upper = "" if grant.max_version is None else str(grant.max_version)
        raise ScopeError(f"grant covers versions {grant.min_version}..{upper}, not {version}")


def check_grant_window(grant: GrantTerms, *, grant_id: str, now: datetime, revoked: bool) -> None:
    """Checks G10–G12 of SPEC.md 5.2: valid already, not expired, not revoked."""
    # G10: it is valid already.
    if now < grant.not_before:
        raise NotYetValidError(f"grant is valid from {grant.not_before:%Y-%m-%dT%H:%M:%SZ}")
    # G11: it has not expired.
    if now >= grant.expires:
        raise ExpiredError(f"grant expired at {grant.expires:%Y-%m-%dT%H:%M:%SZ}")
    # G12: it is not revoked.
    if revoked:
        raise RevokedError(f"grant {grant_id[:16]}… has been revoked")


def verify_grant(
    envelope: Envelope,
    *,
    manifest: Verified[DatasetManifest],
    grantee: str,
    now: datetime,
    revoked: Collection[str] = (),
    columns: Collection[str] | None = None,
    successors: Mapping[str, VerifyKey] | None = None,
) -> Verified[AccessGrant]:
    """Verify that ``envelope`` grants ``grantee`` access to ``manifest``'s version (SPEC.md 5.2).

    The grant must be signed by the key that signed the manifest, or by a key that key was
    rotated to (``successors``: the keys reached from the manifest's signer by verified key
    rotations, 5.5), so a publisher who rotated can still grant its older versions.
    ``revoked`` holds grant ids the caller knows to be revoked; ``columns`` the columns about to
    be read (``None``: the columns the grant covers, :func:`granted_columns`).
    """
    publisher = manifest.signer
    trusted = {publisher.keyid: publisher, **(successors or {})}
    v = open_grant(envelope, publisher_keys=trusted)  # G1–G5
    g, m = v.statement, manifest.statement
    # G6: it is a grant for this dataset.
    if g.dataset != m.dataset:
        raise ScopeError(f"grant is for {g.dataset}, not {m.dataset}")
    # G7: it names this grantee.
    if g.grantee != grantee:
        raise ScopeError("grant is for another key")
    check_grant_version(g, m.version)  # G8
    # G9: it covers the columns to be read (by column and by column group).
    granted = granted_columns(g, m)
    if not granted:
        raise ScopeError(f"grant covers no column of {m.dataset} version {m.version}")
    if columns is not None and not set(columns) <= set(granted):
        missing = ", ".join(sorted(set(columns) - set(granted)))
        raise ScopeError(f"grant does not cover column(s) {missing}")
    check_grant_window(g, grant_id=v.digest, now=now, revoked=v.digest in revoked)  # G10–G12
    return v


def granted_columns(grant: AccessGrant, manifest: DatasetManifest) -> list[str]:
    """The manifest's columns the grant covers, in manifest order: in its ``columns`` (all if
    ``null``) and in a column group it names (all if ``groups`` is ``null``; SPEC 5.2 G9)."""
    allowed = None if grant.columns is None else set(grant.columns)
    out: list[str] = []
    for group, cols in manifest.group_columns().items():
        if grant.groups is None or group in grant.groups:
            out += [c for c in cols if allowed is None or c in allowed]
    order = {c.name: i for i, c in enumerate(manifest.columns)}
    return sorted(out, key=order.__getitem__)


def verify_revocation(
    envelope: Envelope, *, publisher_key: VerifyKey, now: datetime
) -> Verified[Revocation]:
    """Verify a revocation signed by the dataset's publisher key (SPEC.md 5.3)."""
    v = _open(envelope, Revocation, {publisher_key.keyid: publisher_key})  # R1–R4
    # R5: the revocation names the key that signed it.
    _names_signer(
        v.signer, v.statement.publisher, "revocation names a publisher key other than its signer"
    )
    # R6: not created in the verifier's future.
    _not_from_future(v.statement.created, now, "revocation")
    return v


def verify_request(
    envelope: Envelope,
    *,
    requester_key: VerifyKey,
    now: datetime,
    manifest: DatasetManifest | None = None,
) -> Verified[AccessRequest]:
    """Verify an access request (SPEC.md 5.4); with ``manifest``, that it accepts its terms."""
    v = _open(envelope, AccessRequest, {requester_key.keyid: requester_key})  # Q1–Q4
    r = v.statement
    # Q5: the request names the key that signed it.
    _names_signer(v.signer, r.requester, "request names a requester key other than its signer")
    # Q6: not created in the verifier's future.
    _not_from_future(r.created, now, "request")
    if manifest is not None:
        # Q7: it is for this dataset, and accepts these terms (exactly, by digest).
        if r.dataset != manifest.dataset:
            raise ScopeError(f"request is for {r.dataset}, not {manifest.dataset}")
        if r.terms_sha256 != manifest.terms_sha256:
            raise ScopeError("request accepts other terms than the dataset's current terms")
    return v


def verify_key_rotation(
    envelope: Envelope, *, old_key: VerifyKey, now: datetime
) -> Verified[KeyRotation]:
    """Verify a key rotation signed by both the old and the new key (SPEC.md 5.5)."""
    v = _open(envelope, KeyRotation, {old_key.keyid: old_key})  # K1–K4
    rot = v.statement
    # K5: it rotates away from the key that signed it.
    _names_signer(v.signer, rot.old_key, "rotation names another old key than its signer")
    # K6: the new key signed it too (proof of possession).
    require_signature(envelope, rot.new_key.to_verify_key())
    # K7: not created in the verifier's future.
    _not_from_future(rot.created, now, "key rotation")
    return v


def verify_attestation(
    envelope: Envelope,
    *,
    trainer_key: VerifyKey,
    now: datetime,
    checkpoint_sha256: str | None = None,
) -> Verified[TrainingAttestation]:
    """Verify a training attestation (SPEC.md 5.6); optionally against a checkpoint digest."""
    v = _open(envelope, TrainingAttestation, {trainer_key.keyid: trainer_key})  # A1–A4
    a = v.statement
    # A5: the attestation names the key that signed it.
    _names_signer(v.signer, a.trainer, "attestation names a trainer key other than its signer")
    # A6: not created in the verifier's future.
    _not_from_future(a.created, now, "attestation")
    # A7: it is about this checkpoint.
    if checkpoint_sha256 is not None and a.checkpoint_sha256 != checkpoint_sha256:
        raise VerificationError("attestation is about another checkpoint (sha256 differs)")
    return v
