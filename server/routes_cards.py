"""Dataset cards and deprecations (SPEC 3.7, 3.8): metadata that changes without a new data
version. Each statement is verified against the namespace owner's active keys, stored byte for
byte, audited, and appended to the transparency log (``tlog``) in the transaction that accepts
it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from sqlalchemy.orm import Session

from ostraca.protocol_spec.cards import (
    DatasetCard,
    Deprecation,
    verify_card,
    verify_deprecation,
)
from ostraca.protocol_spec.envelope import Envelope
from ostraca.protocol_spec.errors import ChainError, ConflictError, NotFoundError
from ostraca.protocol_spec.keys import VerifyKey
from ostraca.protocol_spec.verify import ChainHead
from ostraca.protocol_spec.wire import CardOut, DeprecationItem, DeprecationList

from .cards import (
    card_head,
    card_out,
    current_card,
    current_version,
    deprecation_item,
    deprecations,
    stored_version,
)
from .db import CardRow, Dataset, DeprecationRow
from .deps import Caller, ContextDep, EnvelopeBody, InstitutionDep, ReadSessionDep, SessionDep
from .principals import signing_keys
from .repo import claimed_statement, dataset_name, get_dataset, owner_of, require_owner
from .routes_access import _ENVELOPE_BODY, _store

router = APIRouter(prefix="/v1", tags=["cards"])


def _intake(
    session: Session, caller: Caller, ns: str, name: str, envelope: Envelope
) -> tuple[Dataset, dict[str, VerifyKey]]:
    """The caller's own dataset, and the keys that may sign for it now: its owner's active
    keys (a statement by a rotated key is refused with a message that says so)."""
    ds = get_dataset(session, dataset_name(ns, name))
    require_owner(session, caller, ds)
    return ds, signing_keys(session, owner_of(session, ds), envelope)


def _columns(
    statement: DatasetCard | Deprecation, ds: Dataset, now: datetime, body: bytes
) -> dict[str, Any]:
    """The columns a card row and a deprecation row share."""
    return {
        "dataset_id": ds.id,
        "publisher": statement.publisher,
        "created": statement.created,
        "accepted": now,
        "envelope": body,
    }


@router.post("/datasets/{ns}/{name}/card", status_code=201, openapi_extra=_ENVELOPE_BODY)
def publish_card(
    ns: str,
    name: str,
    caller: InstitutionDep,
    body: EnvelopeBody,
    session: SessionDep,
    ctx: ContextDep,
) -> CardOut:
    envelope = Envelope.from_json(body)
    ds, keys = _intake(session, caller, ns, name, envelope)
    now = ctx.clock()
    head = card_head(current_card(session, ds))
    # C1–C8: by an active key of the owner, for this dataset, not older than the current card.
    verified = verify_card(envelope, publisher_keys=keys, now=now, dataset=ds.name, previous=head)
    card = verified.statement
    if head is not None and verified.digest == head.digest:
        raise ConflictError(f"this card is already the current card of {ds.name}")
    expected = 1 if head is None else head.sequence + 1
    if card.sequence != expected:
        raise ChainError(
            f"card {card.sequence} of {ds.name} does not follow the current card: the next "
            f"card is {expected}"
        )
    row = CardRow(card_id=verified.digest, sequence=card.sequence, **_columns(card, ds, now, body))
    _store(
        session,
        row,
        conflict=f"card {card.sequence} of {ds.name} was stored concurrently",
        now=now,
        action="card",
        principal=caller.keyid,
        dataset=ds.name,
        detail=f"card {card.sequence} {verified.digest}",
    )
    session.commit()
    return card_out(ds, row)


@router.get("/datasets/{ns}/{name}/card")
def dataset_card(ns: str, name: str, session: ReadSessionDep) -> CardOut:
    ds = get_dataset(session, dataset_name(ns, name))
    row = current_card(session, ds)
    if row is None:
        raise NotFoundError(f"{ds.name} has no card", hint=f"ostraca card {ds.name} --readme FILE")
    return card_out(ds, row)


@router.post("/datasets/{ns}/{name}/deprecations", status_code=201, openapi_extra=_ENVELOPE_BODY)
def deprecate(
    ns: str,
    name: str,
    caller: InstitutionDep,
    body: EnvelopeBody,
    session: SessionDep,
    ctx: ContextDep,
) -> DeprecationItem:
    envelope = Envelope.from_json(body)
    ds, keys = _intake(session, caller, ns, name, envelope)
    # Which version it claims to deprecate, to check it against that version's manifest (D8).
    _, claimed = claimed_statement(body, Deprecation)
    version = stored_version(session, ds, claimed.version)
    now = ctx.clock()
    verified = verify_deprecation(  # D1–D8
        envelope,
        publisher_keys=keys,
        now=now,
        dataset=ds.name,
        manifest=ChainHead(dataset=ds.name, version=version.version, digest=version.digest),
    )
    d = verified.statement
    row = DeprecationRow(
        deprecation_id=verified.digest, version=d.version, **_columns(d, ds, now, body)
    )
    _store(
        session,
        row,
        conflict=f"{ds.name} version {d.version} is already deprecated",
        now=now,
        action="deprecate",
        principal=caller.keyid,
        dataset=ds.name,
        version=d.version,
        detail=f"deprecation {verified.digest}: {d.reason[:200]}",
    )
    session.commit()
    return deprecation_item(ds, row)


@router.get("/datasets/{ns}/{name}/deprecations")
def deprecation_list(ns: str, name: str, session: ReadSessionDep) -> DeprecationList:
    ds = get_dataset(session, dataset_name(ns, name))
    return DeprecationList(
        dataset=ds.name,
        latest_version=ds.latest_version,
        current_version=current_version(session, ds),
        items=[deprecation_item(ds, row) for row in deprecations(session, ds)],
    )
