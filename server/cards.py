"""Data access for dataset cards and deprecations (SPEC 3.7, 3.8). Functions take the session
explicitly; the routes are in :mod:`.routes_cards`."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from ostraca.protocol_spec.canonical import parse_canonical
from ostraca.protocol_spec.cards import CardHead, DatasetCard, Deprecation
from ostraca.protocol_spec.envelope import Envelope
from ostraca.protocol_spec.errors import NotFoundError
from ostraca.protocol_spec.wire import CardOut, DeprecationItem

from .db import CardRow, Dataset, DeprecationRow, Version
from .repo import envelope_json, ts

S = TypeVar("S", DatasetCard, Deprecation)


def current_card(session: Session, dataset: Dataset) -> CardRow | None:
    """The dataset's card with the highest sequence, if it has one."""
    return session.scalars(
        select(CardRow)
        .where(CardRow.dataset_id == dataset.id)
        .order_by(CardRow.sequence.desc())
        .limit(1)
    ).first()


def card_head(row: CardRow | None) -> CardHead | None:
    return None if row is None else CardHead(sequence=row.sequence, digest=row.card_id)


def deprecations(session: Session, dataset: Dataset) -> list[DeprecationRow]:
    """The dataset's deprecations, by version."""
    return list(
        session.scalars(
            select(DeprecationRow)
            .where(DeprecationRow.dataset_id == dataset.id)
            .order_by(DeprecationRow.version)
        )
    )


def stored_version(session: Session, dataset: Dataset, number: int) -> Version:
    version = session.scalars(
        select(Version).where(Version.dataset_id == dataset.id, Version.version == number)
    ).first()
    if version is None:
        raise NotFoundError(f"{dataset.name} has no version {number}")
    return version


def current_version(session: Session, dataset: Dataset) -> int:
    """What ``latest`` means: the newest version not deprecated (the newest version when every
    version is deprecated)."""
    deprecated = set(
        session.scalars(
            select(DeprecationRow.version).where(DeprecationRow.dataset_id == dataset.id)
        )
    )
    live = (v for v in range(dataset.latest_version, 0, -1) if v not in deprecated)
    return next(live, dataset.latest_version)


def _statement(envelope: bytes, model: type[S]) -> S:
    """A stored statement (verified when it was accepted)."""
    return model.from_json_obj(parse_canonical(Envelope.from_json(envelope).payload))


def card_out(dataset: Dataset, row: CardRow) -> CardOut:
    card = _statement(row.envelope, DatasetCard)
    return CardOut(
        dataset=dataset.name,
        card_id=row.card_id,
        sequence=row.sequence,
        publisher=row.publisher,
        description=card.description,
        readme=card.readme,
        created=ts(row.created),
        accepted=ts(row.accepted),
        envelope=envelope_json(row.envelope),
    )


def deprecation_item(dataset: Dataset, row: DeprecationRow) -> DeprecationItem:
    d = _statement(row.envelope, Deprecation)
    return DeprecationItem(
        deprecation_id=row.deprecation_id,
        dataset=dataset.name,
        version=row.version,
        manifest=d.manifest,
        publisher=row.publisher,
        reason=d.reason,
        created=ts(row.created),
        accepted=ts(row.accepted),
        envelope=envelope_json(row.envelope),
    )
