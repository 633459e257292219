"""Encryption keys and key grants on the registry (ENCRYPTION.md 4.4): stored byte for byte
after verification, never opened (the registry holds no private key and no unwrapped key).
Functions take the session explicitly."""

from __future__ import annotations

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from ostraca.protocol_spec.enckeys import EncryptionKey, KeyGrant
from ostraca.protocol_spec.errors import VerificationError
from ostraca.protocol_spec.wire import EncryptionKeyItem, KeyGrantItem

from .db import Dataset, EncryptionKeyRow, GrantRow, KeyGrantRow, Namespace, RevocationRow
from .deps import Caller
from .repo import dataset_by_id, envelope_json


def encryption_keys(session: Session, principal_id: int) -> list[EncryptionKeyRow]:
    """A principal's registered encryption keys, oldest first."""
    query = select(EncryptionKeyRow).where(EncryptionKeyRow.principal_id == principal_id)
    return list(session.scalars(query.order_by(EncryptionKeyRow.created, EncryptionKeyRow.keyid)))


def encryption_key_item(row: EncryptionKeyRow) -> EncryptionKeyItem:
    return EncryptionKeyItem(
        keyid=row.keyid, owner=row.owner, created=row.created, envelope=envelope_json(row.envelope)
    )


def encryption_key_row(
    statement: EncryptionKey, *, principal_id: int, envelope: bytes
) -> EncryptionKeyRow:
    return EncryptionKeyRow(
        keyid=statement.keyid,
        principal_id=principal_id,
        owner=statement.owner,
        created=statement.created,
        envelope=envelope,
    )


def check_key_grant(
    session: Session, grant: KeyGrant, *, dataset: Dataset, grantee_id: int, publisher_id: int
) -> None:
    """The key grant serves a grant of ``dataset`` to its grantee (or is the publisher's own
    escrow), and is wrapped to an encryption key the grantee registered."""
    if grant.grant is None:
        if grantee_id != publisher_id:
            raise VerificationError("an escrow key grant must be for the publisher itself")
    else:
        row = session.get(GrantRow, grant.grant)
        if row is None or row.dataset_id != dataset.id or row.grantee_id != grantee_id:
            raise VerificationError(
                f"key grant serves grant {grant.grant}, which is not a grant of {dataset.name} "
                "to its grantee"
            )
    key = session.get(EncryptionKeyRow, grant.recipient)
    if key is None or key.principal_id != grantee_id:
        raise VerificationError(
            f"key grant is wrapped to encryption key {grant.recipient[:16]}…, which the grantee "
            "has not registered"
        )


def key_grant_row(
    grant: KeyGrant, *, key_grant_id: str, dataset: Dataset, grantee_id: int, envelope: bytes
) -> KeyGrantRow:
    return KeyGrantRow(
        key_grant_id=key_grant_id,
        dataset_id=dataset.id,
        grantee=grant.grantee,
        grantee_id=grantee_id,
        grant_id=grant.grant,
        recipient=grant.recipient,
        created=grant.created,
        envelope=envelope,
    )


def _visible_key_grants(caller: Caller) -> Select[KeyGrantRow]:
    """The caller's own key grants, unless their grant is revoked, and every key grant of the
    datasets it publishes."""
    revoked = select(RevocationRow.grant_id)
    owned = select(Dataset.id).join(Namespace, Namespace.id == Dataset.namespace_id)
    owned = owned.where(Namespace.owner_id == caller.principal_id)
    return select(KeyGrantRow).where(
        or_(
            KeyGrantRow.dataset_id.in_(owned),
            (KeyGrantRow.grantee_id == caller.principal_id)
            & or_(KeyGrantRow.grant_id.is_(None), KeyGrantRow.grant_id.not_in(revoked)),
        )
    )


def visible_key_grants(session: Session, caller: Caller, *, dataset: Dataset) -> list[KeyGrantRow]:
    query = _visible_key_grants(caller).where(KeyGrantRow.dataset_id == dataset.id)
    return list(session.scalars(query.order_by(KeyGrantRow.created, KeyGrantRow.key_grant_id)))


def key_grant_item(session: Session, row: KeyGrantRow) -> KeyGrantItem:
    ds = dataset_by_id(session, row.dataset_id)
    return KeyGrantItem(
        key_grant_id=row.key_grant_id,
        dataset=ds.name,
        grantee=row.grantee,
        grant_id=row.grant_id,
        recipient=row.recipient,
        created=row.created,
        envelope=envelope_json(row.envelope),
    )
