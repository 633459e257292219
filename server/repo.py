"""Data access shared by the routes. Functions take the session explicitly."""

from __future__ import annotations

import json
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import Engine, Table, bindparam, insert, select
from sqlalchemy.orm import Session

from ostraca.protocol_spec.canonical import parse_canonical
from ostraca.protocol_spec.envelope import Envelope
from ostraca.protocol_spec.errors import (
    AccessDeniedError,
    NotFoundError,
    PayloadTypeError,
    UntrustedKeyError,
)
from ostraca.protocol_spec.keys import VerifyKey
from ostraca.protocol_spec.models import PublicKey, Statement, split_dataset
from ostraca.protocol_spec.verify import ChainHead
from ostraca.protocol_spec.wire import (
    KeyOut,
    PrincipalOut,
)

from .db import AuditEvent, Dataset, Namespace, Principal, PrincipalKey, Version
from .deps import Caller

AuditAction = Literal[
    "publish", "request", "grant", "deny", "revoke", "read", "read_refused", "rotate_key"
]


S = TypeVar("S", bound=Statement)


def claimed_statement(body: bytes, model: type[S]) -> tuple[Envelope, S]:
    """An envelope and the statement it *claims* to carry, NOT yet verified.

    Only for finding which keys to trust (the dataset's owner, the grant to revoke, the key to
    rotate); the route then verifies the envelope with those keys before acting on it.
    """
    envelope = Envelope.from_json(body)
    if envelope.payload_type != model.PAYLOAD_TYPE:
        raise PayloadTypeError(
            f"expected payloadType {model.PAYLOAD_TYPE!r}, got {envelope.payload_type!r}"
        )
    return envelope, model.from_json_obj(parse_canonical(envelope.payload))


def ts(value: datetime) -> datetime:
    """Drop sub-second precision (API timestamps are whole seconds)."""
    return value.replace(microsecond=0)


def envelope_json(data: bytes) -> dict[str, Any]:
    """A stored envelope as the JSON object clients receive inside list responses."""
    return cast("dict[str, Any]", json.loads(data))


def principal_keys(
    session: Session, principal_id: int, *, rotated: bool = False
) -> list[PrincipalKey]:
    """The principal's unrevoked keys: the active ones (oldest first); with ``rotated``, then
    the rotated ones (most recently rotated first)."""
    query = select(PrincipalKey).where(
        PrincipalKey.principal_id == principal_id, PrincipalKey.revoked.is_(None)
    )
    if not rotated:
        query = query.where(PrincipalKey.rotated.is_(None))
    rows = list(session.scalars(query.order_by(PrincipalKey.created, PrincipalKey.keyid)))
    active = [k for k in rows if k.rotated is None]
    # Rotated keys newest first: walk the chain back from the active keys (times may tie).
    by_id = {k.keyid: k for k in rows}
    old: list[PrincipalKey] = []
    for k in active:
        cur = by_id.get(k.replaces or "")
        while cur is not None and cur.rotated is not None and cur not in old:
            old.append(cur)
            cur = by_id.get(cur.replaces or "")
    old += [k for k in reversed(rows) if k.rotated is not None and k not in old]
    return active + old


def verify_keys(session: Session, principal_id: int) -> dict[str, VerifyKey]:
    """The principal's active keys: the ones that may sign new statements."""
    return {k.keyid: VerifyKey.from_b64(k.public) for k in principal_keys(session, principal_id)}


def rotated_key_error(key: PrincipalKey, successor: str | None) -> UntrustedKeyError:
    when = "" if key.rotated is None else f" at {key.rotated:%Y-%m-%dT%H:%M:%SZ}"
    to = "" if successor is None else f" to {successor[:16]}…"
    return UntrustedKeyError(
        f"key {key.keyid[:16]}… was rotated{to}{when}: it still verifies what it signed "
        "before, but it can no longer sign new statements",
        hint="sign with the active key (`ostraca rotate-key` moved your identity file to it)",
    )


def signing_keys(session: Session, principal_id: int, envelope: Envelope) -> dict[str, VerifyKey]:
    """The keys trusted to sign a new statement of the principal: its active keys.

    An envelope signed by none of them but by one of the principal's rotated keys is refused
    here, with an error that says so (rather than a bare ``untrusted_key`` later).
    """
    rows = principal_keys(session, principal_id, rotated=True)
    active = {k.keyid: VerifyKey.from_b64(k.public) for k in rows if k.rotated is None}
    signers = {s.keyid for s in envelope.signatures}
    if not signers & active.keys():
        for k in rows:
            if k.keyid in signers:
                successor = next((r.keyid for r in rows if r.replaces == k.keyid), None)
                raise rotated_key_error(k, successor)
    return active


def key_outs(session: Session, principal_id: int) -> list[KeyOut]:
    """Active and rotated keys of a principal, with their status."""
    rows = principal_keys(session, principal_id, rotated=True)
    successor = {k.replaces: k.keyid for k in rows if k.replaces is not None}
    return [
        KeyOut(
            keyid=k.keyid,
            public=k.public,
            status="active" if k.rotated is None else "rotated",
            created=ts(k.created),
            rotated=None if k.rotated is None else ts(k.rotated),
            successor=successor.get(k.keyid),
        )
        for k in rows
    ]


def principal_out(session: Session, principal: Principal) -> PrincipalOut:
    keys = key_outs(session, principal.id)
    return PrincipalOut(
        keyid=principal.keyid,
        name=principal.name,
        kind=cast("Literal['institution', 'researcher']", principal.kind),
        affiliation=principal.affiliation,
        keys=[PublicKey(keyid=k.keyid, public=k.public) for k in keys if k.status == "active"],
        rotated_keys=[k for k in keys if k.status == "rotated"],
        created=ts(principal.created),
    )


def get_principal(session: Session, principal_id: int) -> Principal:
    principal = session.get(Principal, principal_id)
    if principal is None:
        raise NotFoundError("unknown principal")
    return principal


def principal_by_key(session: Session, keyid: str) -> Principal | None:
    return session.scalars(
        select(Principal)
        .join(PrincipalKey, PrincipalKey.principal_id == Principal.id)
        .where(PrincipalKey.keyid == keyid)
    ).first()


def get_namespace(session: Session, name: str) -> Namespace:
    ns = session.scalars(select(Namespace).where(Namespace.name == name)).first()
    if ns is None:
        raise NotFoundError(f"no namespace {name!r}", hint=f"ostraca namespace create {name}")
    return ns


def dataset_name(ns: str, name: str) -> str:
    """``ns/name`` after checking both parts (path-like names are refused as malformed)."""
    full = f"{ns}/{name}"
    split_dataset(full)
    return full


def find_dataset(session: Session, full_name: str) -> Dataset | None:
    return session.scalars(select(Dataset).where(Dataset.name == full_name)).first()


def latest_head(session: Session, dataset: Dataset) -> ChainHead:
    """The dataset's latest version, as the head its next version must link to (M8)."""
    digest = session.scalars(
        select(Version.digest).where(
            Version.dataset_id == dataset.id, Version.version == dataset.latest_version
        )
    ).one()
    return ChainHead(dataset=dataset.name, version=dataset.latest_version, digest=digest)


def get_dataset(session: Session, full_name: str) -> Dataset:
    ds = find_dataset(session, full_name)
    if ds is None:
        raise NotFoundError(f"no dataset {full_name}")
    return ds


def owner_of(session: Session, dataset: Dataset) -> int:
    ns = session.get(Namespace, dataset.namespace_id)
    if ns is None:  # pragma: no cover - foreign key
        raise NotFoundError("dataset without namespace")
    return ns.owner_id


def require_owner(session: Session, caller: Caller, dataset: Dataset) -> None:
    if owner_of(session, dataset) != caller.principal_id:
        raise AccessDeniedError(f"only the publisher of {dataset.name} may do this")


def audit(
    session: Session,
    *,
    now: datetime,
    action: AuditAction,
    principal: str | None,
    dataset: str | None,
    version: int | None = None,
    grant_id: str | None = None,
    detail: str = "",
) -> None:
    session.add(
        AuditEvent(
            time=now,
            action=action,
            principal=principal,
            dataset=dataset,
            version=version,
            grant_id=grant_id,
            detail=detail,
        )
    )


# --- audit of blob reads: group commit -------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    row: dict[str, Any]
    done: bool = False
    error: BaseException | None = None


class AuditWriter:
    """Commits the audit events of blob reads with group commit, in the request threads.

    Why: on SQLite every write transaction takes the database-wide write lock, and a thread
    that finds it taken sleeps in SQLite's busy handler (1, 2, 5, 10… ms), so one ORM
    INSERT+COMMIT per ranged GET, from many threads, serialised the registry and gave
    second-long tail latencies. Here threads queue on a Python lock instead; whichever holds it
    (the "leader") inserts every event queued so far in one transaction and commits; the
    others find theirs committed when they get the lock. No extra thread, no hand-off when
    uncontended; under load one commit covers many requests.

    The guarantee is unchanged: :meth:`record` returns only once the event is **committed**
    (or raises), and the route sends no byte before that — so a crash, a full disk or a
    database error cannot lose a decision silently: requests whose events did not commit fail
    (500) and serve nothing. Pending events are bounded by the number of request threads. The
    authorization read and the audit insert are separate transactions: a revocation committed
    between them does not stop that one request (it was authorized first, and is audited); it
    stops the next one.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = weakref.ref(engine)  # the registry of writers must not keep it alive
        self._pending: list[_Pending] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    def record(
        self,
        *,
        now: datetime,
        action: AuditAction,
        principal: str | None,
        dataset: str | None,
        version: int | None = None,
        grant_id: str | None = None,
        detail: str = "",
    ) -> None:
        """Store one event; returns once it is committed, raises if it could not be."""
        mine = _Pending(
            row={
                "time": now,
                "action": action,
                "principal": principal,
                "dataset": dataset,
                "version": version,
                "grant_id": grant_id,
                "detail": detail,
            }
        )
        with self._pending_lock:
            self._pending.append(mine)
        with self._commit_lock:
            # Another leader may have committed ours while we waited for the lock.
            if not mine.done:  # then it is still pending: lead, committing all that is
                self._commit_pending()
        if mine.error is not None:
            raise mine.error

    def _commit_pending(self) -> None:
        with self._pending_lock:
            batch, self._pending = self._pending, []
        try:
            _insert_events(_engine_of(self._engine), [p.row for p in batch])
        except BaseException as exc:  # every event of the batch learns it failed
            for p in batch:
                p.error, p.done = exc, True
        else:
            for p in batch:
                p.done = True


_AUDIT_COLUMNS = ("time", "action", "principal", "dataset", "version", "grant_id", "detail")
_insert_sql: dict[str, tuple[str, list[Any]]] = {}


def _insert_events(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """INSERT the rows in one transaction on a pooled DBAPI connection (the statement compiled
    once per dialect: SQLAlchemy's per-statement work cost more than SQLite's)."""
    dialect = engine.dialect
    key = f"{dialect.name}+{dialect.driver}"
    if key not in _insert_sql:
        table = cast("Table", AuditEvent.__table__)
        stmt = insert(table).values({c: bindparam(c) for c in _AUDIT_COLUMNS})
        compiled = stmt.compile(dialect=dialect)
        procs = [
            table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in _AUDIT_COLUMNS
        ]
        _insert_sql[key] = (str(compiled), procs)
        if dialect.positional:
            assert list(compiled.positiontup or []) == list(_AUDIT_COLUMNS)
    sql, procs = _insert_sql[key]
    params: list[Any] = []
    for row in rows:
        values = [
            row[c] if p is None else p(row[c]) for c, p in zip(_AUDIT_COLUMNS, procs, strict=True)
        ]
        params.append(
            values if dialect.positional else dict(zip(_AUDIT_COLUMNS, values, strict=True))
        )
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if dialect.name == "sqlite":  # the driver is in autocommit mode (db.py): open it here
            cur.execute("BEGIN IMMEDIATE")
        try:
            cur.executemany(sql, params)
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            cur.close()
    finally:
        raw.close()


def _engine_of(ref: weakref.ref[Engine]) -> Engine:
    engine = ref()
    if engine is None:
        raise RuntimeError("the registry's database engine is gone")
    return engine


_writers: weakref.WeakKeyDictionary[Engine, AuditWriter] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def audit_writer(engine: Engine) -> AuditWriter:
    """The process's audit writer for ``engine`` (created on first use)."""
    with _writers_lock:
        writer = _writers.get(engine)
        if writer is None:
            writer = _writers[engine] = AuditWriter(engine)
        return writer
