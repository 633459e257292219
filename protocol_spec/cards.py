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
from typing import Annotated, ClassVar, Self, TypeVar

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
MAX_README = 65_536
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


M = TypeVar("M", DatasetCard, Deprecation)


def _open_for_dataset(
    envelope: Envelope,
    model: type[M],
    *,
    publisher_keys: Mapping[str, VerifyKey],
    retired: RetiredKeys | None,
    now: datetime,
    dataset: str,
) -> Verified[M]:
    """Checks 1–7 of SPEC.md 5.8 and 5.9 (C1–C7, D1–D7), the same for both statements."""
    v = _open(envelope, model, _namespace_trust(publisher_keys, retired))  # 1–4
    s, kind = v.statement, model.__name__
    # 4: a retired key signs nothing created after its rotation.
    _not_after_rotation(v, s.created, publisher_keys, retired, what=f"a {kind} of {s.dataset}")
    # 5: the statement names the key that signed it.
    _names_signer(v.signer, s.publisher, f"{kind} names a publisher key other than its signer")
    # 6: it is about the dataset the caller asked for.
    if s.dataset != dataset:
        raise ScopeError(f"{kind} is for {s.dataset}, not {dataset}")
    # 7: not created in the verifier's future.
    _not_from_future(s.created, now, kind)
    return v


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
    v = _open_for_dataset(  # C1–C7
        envelope,
        DatasetCard,
        publisher_keys=publisher_keys,
        retired=retired,
        now=now,
        dataset=dataset,
    )
    c = v.statement
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
    v = _open_for_dataset(  # D1–D7
        envelope,
        Deprecation,
        publisher_keys=publisher_keys,
        retired=retired,
        now=now,
        dataset=dataset,
    )
    d = v.statement
    # D8: it deprecates exactly this manifest.
    if manifest is not None and (
        (d.dataset, d.version, d.manifest) != (manifest.dataset, manifest.version, manifest.digest)
    ):
        raise ScopeError(
            f"the deprecation of {d.dataset} version {d.version} names manifest "
            f"{d.manifest[:16]}…, not {manifest.dataset} version {manifest.version} "
            f"({(manifest.digest or '')[:16]}…)"
        )
    return v
