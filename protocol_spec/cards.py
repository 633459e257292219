"""The statements that change a dataset's metadata without a new data version (SPEC 3.7, 3.8).

A :class:`DatasetCard` carries the description and README (markdown) and supersedes the card
before it; a :class:`Deprecation` marks one version as no longer recommended. Both are signed by
a publisher key of the dataset's namespace and verified by :func:`verify_card` and
:func:`verify_deprecation` (SPEC 5.8, 5.9).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, ClassVar, Self

from pydantic import StringConstraints, model_validator

from .envelope import Envelope
from .errors import ChainError, RollbackError, ScopeError
from .keys import VerifyKey
from .models import DatasetName, Hex256, PositiveInt, Statement, Timestamp
from .verify import (
    ChainHead,
    RetiredKeys,
    Verified,
    _names_signer,
    _namespace_trust,
    _not_after_rotation,
    _not_from_future,
    _open,
)

MAX_DESCRIPTION = 16_384
MAX_README = 262_144
"""Code points of a card's README (its markdown source)."""


class DatasetCard(Statement):
    """A dataset's description and README. Cards form a chain per dataset (``previous``); the
    one with the highest ``sequence`` is current."""

    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.ostraca.dataset-card+json"

    dataset: DatasetName
    publisher: Hex256
    sequence: PositiveInt
    previous: Hex256 | None
    """Id of the card this one supersedes (``sequence - 1``); ``null`` exactly for 1."""
    description: Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION)] = ""
    readme: Annotated[str, StringConstraints(max_length=MAX_README)] = ""
    created: Timestamp

    @model_validator(mode="after")
    def _first(self) -> Self:
        if (self.sequence == 1) != (self.previous is None):
            raise ValueError("previous must be null exactly when sequence is 1")
        return self


class Deprecation(Statement):
    """The publisher's word that one version should no longer be used: ``latest`` skips it, it
    stays readable by its number, and grants covering it are unchanged."""

    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.ostraca.deprecation+json"

    dataset: DatasetName
    version: PositiveInt
    manifest: Hex256
    """Id of the deprecated version's manifest."""
    publisher: Hex256
    reason: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    created: Timestamp


@dataclass(frozen=True, slots=True)
class CardHead:
    """The newest card of a dataset a verifier trusts: all that check C8 needs of it."""

    sequence: int
    digest: str

    @classmethod
    def of(cls, verified: Verified[DatasetCard]) -> CardHead:
        return cls(sequence=verified.statement.sequence, digest=verified.digest)


def verify_card(
    envelope: Envelope,
    *,
    publisher_keys: Mapping[str, VerifyKey],
    now: datetime,
    dataset: str,
    previous: CardHead | None = None,
    retired: RetiredKeys | None = None,
) -> Verified[DatasetCard]:
    """Verify a dataset card (SPEC.md 5.8): signed by a key of the namespace (``retired`` ones
    only for cards created before their rotation), for ``dataset``, and not older than the
    newest card the caller trusts (``previous``): an older card replayed is a rollback."""
    v = _open(envelope, DatasetCard, _namespace_trust(publisher_keys, retired))  # C1–C4
    c = v.statement
    _not_after_rotation(v, c.created, publisher_keys, retired, what=f"card {c.sequence}")  # C4
    # C5: the card names the key that signed it.
    _names_signer(v.signer, c.publisher, "card names a publisher key other than its signer")
    # C6: it is the dataset the caller asked for.
    if c.dataset != dataset:
        raise ScopeError(f"card is for {c.dataset}, not {dataset}")
    # C7: not created in the verifier's future.
    _not_from_future(c.created, now, "card")
    # C8: not older than the newest trusted card, and no fork of it.
    if previous is not None:
        p = previous
        if c.sequence < p.sequence:
            raise RollbackError(
                f"card {c.sequence} of {dataset} is older than trusted card {p.sequence}"
            )
        if c.sequence == p.sequence and v.digest != p.digest:
            raise ChainError(f"two different cards claim {dataset} card {c.sequence}")
        if c.sequence == p.sequence + 1 and c.previous != p.digest:
            raise ChainError(f"card {c.sequence} of {dataset} does not supersede trusted card")
    return v


def verify_deprecation(
    envelope: Envelope,
    *,
    publisher_keys: Mapping[str, VerifyKey],
    now: datetime,
    dataset: str,
    manifest: ChainHead | None = None,
    retired: RetiredKeys | None = None,
) -> Verified[Deprecation]:
    """Verify a deprecation (SPEC.md 5.9): signed by a key of the namespace, for ``dataset``,
    and, with ``manifest`` (a version's place: dataset, number, manifest id), for exactly that
    manifest."""
    v = _open(envelope, Deprecation, _namespace_trust(publisher_keys, retired))  # D1–D4
    d = v.statement
    what = f"the deprecation of {d.dataset} version {d.version}"
    _not_after_rotation(v, d.created, publisher_keys, retired, what=what)  # D4
    # D5: the deprecation names the key that signed it.
    _names_signer(v.signer, d.publisher, "deprecation names a publisher key other than its signer")
    # D6: it is the dataset the caller asked for.
    if d.dataset != dataset:
        raise ScopeError(f"deprecation is for {d.dataset}, not {dataset}")
    # D7: it deprecates exactly this manifest.
    if manifest is not None and (
        (d.dataset, d.version, d.manifest) != (manifest.dataset, manifest.version, manifest.digest)
    ):
        raise ScopeError(
            f"{what} names manifest {d.manifest[:16]}…, not {manifest.dataset} version "
            f"{manifest.version} ({(manifest.digest or '')[:16]}…)"
        )
    # D8: not created in the verifier's future.
    _not_from_future(d.created, now, "deprecation")
    return v
