"""The transparency log (protocol_spec/LOG.md): storage, the append hook, signed checkpoints.

Every statement the registry accepts becomes a log entry **in the transaction that accepts it**:
an ``after_flush`` listener on SQLAlchemy's :class:`Session` notices the new rows of the
statement tables (manifest versions, access requests, grants, revocations, key rotations,
principal registrations, dataset cards and deprecations) and appends their envelope bytes,
exactly as stored, as leaves. It stores the Merkle nodes
:func:`~ostraca.protocol_spec.merkle.new_nodes` returns, so a root or a proof is a few indexed
reads, and keeps the right edge of the tree (the *frontier*) in the one
``log_head`` row, so appending reads nothing but that row. Locking that row (``FOR UPDATE`` on
PostgreSQL; SQLite's writers are serialized by ``BEGIN IMMEDIATE``) orders concurrent appends.

Registrations and denials carry no stored envelope; their entry is a *registry record*, the
canonical JSON of what was accepted (:func:`registration_record`, :func:`denial_record`). A key
grant's entry is a record committing to its envelope (``enckeys.key_grant_log_record``): its
wrapped keys, served only to its grantee and the owners, stay off the public log.

Checkpoints are signed with the registry's log key (:class:`LogSettings`) lazily: the latest is
re-signed when it is older than the interval or behind the tree (:func:`latest_checkpoint`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import (
    BigInteger,
    Connection,
    Index,
    Result,
    String,
    Update,
    and_,
    event,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, UOWTransaction, mapped_column

from ostraca.protocol_spec.canonical import canonical_bytes, sha256_hex
from ostraca.protocol_spec.checkpoint import Checkpoint, sign_checkpoint
from ostraca.protocol_spec.enckeys import key_grant_log_record
from ostraca.protocol_spec.envelope import Envelope
from ostraca.protocol_spec.errors import NotFoundError
from ostraca.protocol_spec.keys import SigningKey
from ostraca.protocol_spec.merkle import (
    HASH_SIZE,
    NodeSource,
    leaf_hash,
    new_nodes,
    tree_root,
)
from ostraca.protocol_spec.note import COSIGNATURE_V1, NoteVerifier

from .db import (
    AccessRequestRow,
    Base,
    CardRow,
    Dataset,
    DeprecationRow,
    EncryptionKeyRow,
    GrantRow,
    KeyGrantRow,
    Principal,
    PrincipalKey,
    RevocationRow,
    Version,
)

__all__ = [
    "LogCheckpoint",
    "LogEntry",
    "LogHead",
    "LogNode",
    "LogSettings",
    "TreeHead",
    "backfill",
    "backfill_keys",
    "denial_record",
    "latest_checkpoint",
    "load_log_key",
    "read_head",
    "registration_record",
    "replace_checkpoint",
]

T = TypeVar("T")

REGISTRATION_TYPE = "application/vnd.ostraca.log.registration+json"
DENIAL_TYPE = "application/vnd.ostraca.log.denial+json"


class LogHead(Base):
    """One row (id 1): the tree size and its frontier, the roots of the perfect subtrees that
    tile ``[0, size)``, largest first, concatenated (32 bytes each, one per bit set in size)."""

    __tablename__ = "log_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    frontier: Mapped[bytes]


class LogEntry(Base):
    __tablename__ = "log_entries"

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    statement_id: Mapped[str] = mapped_column(String(64), index=True)
    """The statement's id (sha256 of the envelope payload; of the record for registry records)."""
    data: Mapped[bytes]
    """The entry: the envelope bytes exactly as stored and served."""


class LogNode(Base):
    __tablename__ = "log_nodes"

    level: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes]


class LogCheckpoint(Base):
    __tablename__ = "log_checkpoints"
    __table_args__ = (Index("ix_log_checkpoints_signed_at", "signed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    signed_at: Mapped[datetime]
    note: Mapped[bytes]


class LogSettings(BaseSettings):
    """The log's settings (``OSTRACA_LOG_*``); the key file defaults to ``<data_dir>/log.key``."""

    model_config = SettingsConfigDict(env_prefix="OSTRACA_LOG_", extra="ignore")

    key_path: Path | None = None
    origin: str = Field(default="", description="Checkpoint origin; default <hostname>/log")
    checkpoint_interval_seconds: int = Field(default=3600, ge=1, le=24 * 3600)
    witnesses: list[str] = Field(default_factory=list, description="Witness base URLs")

    def resolved(self, data_dir: Path) -> LogSettings:
        return self.model_copy(
            update={
                "key_path": self.key_path or data_dir / "log.key",
                "origin": self.origin or f"{os.uname().nodename}/log",
            }
        )

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=self.checkpoint_interval_seconds)


def load_log_key(path: Path) -> SigningKey:
    """The log key in ``path`` (PKCS#8 PEM, mode 0600), created on first start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(SigningKey.generate().to_pem())
    return SigningKey.from_pem(path.read_bytes())


def log_vkey(origin: str, key: SigningKey) -> str:
    return NoteVerifier(name=origin, key=key.public, sig_type=COSIGNATURE_V1).to_vkey()


# --- what becomes an entry ------------------------------------------------------------------


def registration_record(
    *, keyid: str, public: str, name: str, kind: str, affiliation: str, created: datetime
) -> bytes:
    """The entry of a principal registration (its request carries no stored envelope)."""
    return canonical_bytes(
        {
            "payloadType": REGISTRATION_TYPE,
            "keyid": keyid,
            "public": public,
            "name": name,
            "kind": kind,
            "affiliation": affiliation,
            "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )


def denial_record(request_id: str, reason: str, decided: datetime) -> bytes:
    """The entry of a denied access request (a decision, not a signed statement)."""
    return canonical_bytes(
        {
            "payloadType": DENIAL_TYPE,
            "request": request_id,
            "reason": reason,
            "decided": decided.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )


def _record_id(data: bytes) -> str:
    return sha256_hex(data)


def _leaf_of(session: Session, obj: object) -> tuple[int, str, bytes] | None:
    """``(order, statement id, entry)`` for a new statement row, else None."""
    if isinstance(obj, Version):
        return (0, obj.digest, obj.envelope)
    if isinstance(obj, AccessRequestRow):
        return (1, obj.request_id, obj.envelope)
    if isinstance(obj, GrantRow):
        return (2, obj.grant_id, obj.envelope)
    if isinstance(obj, RevocationRow):
        return (3, obj.revocation_id, obj.envelope)
    if isinstance(obj, CardRow):
        return (6, obj.card_id, obj.envelope)
    if isinstance(obj, DeprecationRow):
        return (7, obj.deprecation_id, obj.envelope)
    if isinstance(obj, EncryptionKeyRow):
        return (8, Envelope.from_json(obj.envelope).digest, obj.envelope)
    if isinstance(obj, KeyGrantRow):
        ds = session.get(Dataset, obj.dataset_id)
        assert ds is not None  # the foreign key
        fields = (ds.name, obj.grantee, obj.grant_id, obj.recipient, obj.created)
        return (9, obj.key_grant_id, key_grant_log_record(obj.key_grant_id, *fields))
    if isinstance(obj, PrincipalKey):
        if obj.rotation is not None and obj.rotation_id is not None:
            return (4, obj.rotation_id, obj.rotation)
        principal = session.get(Principal, obj.principal_id)
        if principal is not None and obj.replaces is None:
            data = registration_record(
                keyid=principal.keyid,
                public=obj.public,
                name=principal.name,
                kind=principal.kind,
                affiliation=principal.affiliation,
                created=principal.created,
            )
            return (5, _record_id(data), data)
    return None


def _frontier(size: int, packed: bytes) -> list[tuple[int, bytes]]:
    levels = [lvl for lvl in reversed(range(size.bit_length())) if size >> lvl & 1]
    return [(lvl, packed[i * HASH_SIZE : (i + 1) * HASH_SIZE]) for i, lvl in enumerate(levels)]


@dataclass(frozen=True, slots=True)
class TreeHead:
    size: int
    root: bytes


def _frontier_source(frontier: list[tuple[int, bytes]]) -> NodeSource:
    """The frontier as a node source: the only nodes appending or a root reads."""
    by_level = dict(frontier)
    return lambda level, _index: by_level[level]


def _root(size: int, frontier: list[tuple[int, bytes]]) -> bytes:
    return tree_root(size, _frontier_source(frontier))


def _lock_head(conn: Connection) -> tuple[int, bytes]:
    row = conn.execute(
        select(LogHead.size, LogHead.frontier).where(LogHead.id == 1).with_for_update()
    ).one()
    return int(row.size), bytes(row.frontier)


def append_entries(conn: Connection, entries: Sequence[tuple[str, bytes]]) -> int:
    """Append ``(statement id, entry)`` pairs; the head row is locked until the transaction
    ends. Returns the index of the first."""
    size, packed = _lock_head(conn)
    first = size
    stack = _frontier(size, packed)
    rows: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    for statement_id, data in entries:
        made = new_nodes(size, leaf_hash(data), _frontier_source(stack))
        top = made[-1][0]
        stack = [(lvl, h) for lvl, h in stack if lvl > top] + [(top, made[-1][2])]
        nodes.extend({"level": lvl, "idx": i, "hash": h} for lvl, i, h in made)
        rows.append({"idx": size, "statement_id": statement_id, "data": data})
        size += 1
    conn.execute(insert(LogEntry), rows)
    conn.execute(insert(LogNode), nodes)
    conn.execute(
        update(LogHead)
        .where(LogHead.id == 1)
        .values(size=size, frontier=b"".join(h for _, h in stack))
    )
    return first


@event.listens_for(Session, "after_flush")
def _append_new_statements(session: Session, _ctx: UOWTransaction) -> None:
    """Append the statements this flush stored, in a fixed order, in the same transaction."""
    found = [leaf for obj in session.new if (leaf := _leaf_of(session, obj)) is not None]
    if found:
        found.sort()
        append_entries(session.connection(), [(sid, data) for _, sid, data in found])


@event.listens_for(Session, "do_orm_execute")
def _append_denials(state: ORMExecuteState) -> Result[Any] | None:
    """A denial is an UPDATE of its request (``grants.decide_request``, which returns the
    request ids it changed): append a :func:`denial_record` for each, in the same transaction."""
    mapper = state.bind_mapper
    if not state.is_update or mapper is None or mapper.class_ is not AccessRequestRow:
        return None
    if not isinstance(state.statement, Update):
        return None
    params = state.statement.compile().params
    if params.get("status") != "denied":
        return None
    frozen = state.invoke_statement().freeze()
    records = [
        denial_record(str(row[0]), str(params.get("reason") or ""), params["decided"])
        for row in frozen()
    ]
    if records:
        append_entries(state.session.connection(), [(_record_id(r), r) for r in records])
    return frozen()


def backfill(conn: Connection) -> None:
    """Append every statement already stored, in the order accepted (the migration's step).
    Reads columns, never whole rows, so later migrations adding columns do not break it."""
    found: list[tuple[datetime, int, str, bytes]] = []
    for order, query in enumerate(
        (
            select(Version.published, Version.digest, Version.envelope),
            select(
                AccessRequestRow.created, AccessRequestRow.request_id, AccessRequestRow.envelope
            ),
            select(GrantRow.created, GrantRow.grant_id, GrantRow.envelope),
            select(RevocationRow.revoked_at, RevocationRow.revocation_id, RevocationRow.envelope),
            select(PrincipalKey.created, PrincipalKey.rotation_id, PrincipalKey.rotation).where(
                PrincipalKey.rotation.is_not(None)
            ),
        )
    ):
        found.extend(
            (when, order, str(sid), bytes(data or b"")) for when, sid, data in conn.execute(query)
        )
    principals = select(
        Principal.keyid,
        PrincipalKey.public,
        Principal.name,
        Principal.kind,
        Principal.affiliation,
        Principal.created,
    ).join(PrincipalKey, PrincipalKey.keyid == Principal.keyid)
    for keyid, public, name, kind, affiliation, created in conn.execute(principals):
        data = registration_record(
            keyid=keyid,
            public=public,
            name=name,
            kind=kind,
            affiliation=affiliation,
            created=created,
        )
        found.append((created, 5, _record_id(data), data))
    denials = select(
        AccessRequestRow.request_id,
        AccessRequestRow.reason,
        AccessRequestRow.decided,
        AccessRequestRow.created,
    ).where(AccessRequestRow.status == "denied")
    for request_id, reason, decided, created in conn.execute(denials):
        data = denial_record(request_id, reason or "", decided or created)
        found.append((decided or created, 6, _record_id(data), data))
    if found:
        found.sort()
        append_entries(conn, [(sid, data) for _, _, sid, data in found])


def backfill_keys(conn: Connection) -> None:
    """Append the encryption keys and key grants stored before they were logged, in the order
    accepted (migration 0009's step; a registry at that revision logged none of them)."""
    found: list[tuple[datetime, int, str, bytes]] = []
    keys = select(EncryptionKeyRow.created, EncryptionKeyRow.envelope)
    for created, envelope in conn.execute(keys):
        found.append((created, 8, Envelope.from_json(bytes(envelope)).digest, bytes(envelope)))
    grants = select(
        KeyGrantRow.created,
        KeyGrantRow.key_grant_id,
        Dataset.name,
        KeyGrantRow.grantee,
        KeyGrantRow.grant_id,
        KeyGrantRow.recipient,
    ).join(Dataset, Dataset.id == KeyGrantRow.dataset_id)
    for created, kg_id, dataset, grantee, grant, recipient in conn.execute(grants):
        record = key_grant_log_record(kg_id, dataset, grantee, grant, recipient, created)
        found.append((created, 9, kg_id, record))
    if found:
        found.sort()
        append_entries(conn, [(sid, data) for _, _, sid, data in found])


# --- reading --------------------------------------------------------------------------------


def read_head(session: Session) -> TreeHead:
    size, packed = session.execute(
        select(LogHead.size, LogHead.frontier).where(LogHead.id == 1)
    ).one()
    return TreeHead(size=int(size), root=_root(int(size), _frontier(int(size), bytes(packed))))


def with_nodes(session: Session, size: int, compute: Callable[[NodeSource], T]) -> T:
    """``compute(node)`` over the stored nodes of the tree of ``size``, in one query: a first
    pass records which nodes ``compute`` reads (with placeholder hashes), one SELECT fetches
    them, a second pass computes with them. Proofs read at most ``2 log2 n`` nodes."""
    wanted: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        if (index + 1) << level > size:
            raise NotFoundError(f"node ({level}, {index}) is not in a tree of size {size}")
        wanted.add((level, index))
        return bytes(HASH_SIZE)

    compute(record)
    found: dict[tuple[int, int], bytes] = {}
    if wanted:
        by_level: dict[int, list[int]] = {}
        for level, index in sorted(wanted):
            by_level.setdefault(level, []).append(index)
        # One (level, idx IN ...) term per level: both backends use the primary key for it
        # (SQLite scans the table for a row-value IN).
        rows = session.execute(
            select(LogNode.level, LogNode.idx, LogNode.hash).where(
                or_(
                    *(and_(LogNode.level == lv, LogNode.idx.in_(ix)) for lv, ix in by_level.items())
                )
            )
        )
        found = {(int(r.level), int(r.idx)): bytes(r.hash) for r in rows}
    if len(found) != len(wanted):
        raise NotFoundError(f"{len(wanted) - len(found)} log nodes are missing")
    return compute(lambda level, index: found[(level, index)])


def latest_checkpoint(
    session: Session, *, key: SigningKey, origin: str, now: datetime, interval: timedelta
) -> tuple[bytes, bool]:
    """The latest signed checkpoint, and whether it was signed just now: a new one is signed
    (and stored) when the latest is ``interval`` old or behind the tree (LOG.md C5). ``session``
    must be read-write."""
    head = read_head(session)
    row = session.scalars(select(LogCheckpoint).order_by(LogCheckpoint.id.desc()).limit(1)).first()
    if row is not None and row.size == head.size and now - row.signed_at < interval:
        return bytes(row.note), False
    size, packed = _lock_head(session.connection())
    root = _root(size, _frontier(size, packed))
    note = sign_checkpoint(Checkpoint(origin=origin, size=size, root=root), key=key, now=now)
    session.add(LogCheckpoint(size=size, signed_at=now, note=note))
    return note, True


def replace_checkpoint(session: Session, old: bytes, new: bytes) -> None:
    """Store ``new`` (``old`` with witness cosignatures added) in place of ``old``."""
    session.execute(update(LogCheckpoint).where(LogCheckpoint.note == old).values(note=new))
