"""The audit log: events added in a route's transaction, and the group commit of blob reads."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict, Unpack, cast

from sqlalchemy import Engine, Table, bindparam, insert
from sqlalchemy.orm import Session

from .db import AuditEvent

AuditAction = Literal[
    "publish",
    "request",
    "grant",
    "key_grant",
    "deny",
    "revoke",
    "read",
    "read_url",
    "read_refused",
    "rotate_key",
    "card",
    "deprecate",
]
"""``read_url``: a pre-signed URL for a byte range was issued (its expiry in the detail);
``key_grant``: data keys were wrapped to a grantee (or escrowed to the publisher); ``card``: a
new dataset card was accepted; ``deprecate``: a version was deprecated."""


class AuditEntry(TypedDict):
    """One audit event as the routes describe it."""

    now: datetime
    action: AuditAction
    principal: str | None
    dataset: str | None
    version: NotRequired[int | None]
    grant_id: NotRequired[str | None]
    detail: NotRequired[str]


def _row(entry: AuditEntry) -> dict[str, Any]:
    """The ``audit_events`` columns of an entry."""
    return {
        "time": entry["now"],
        "action": entry["action"],
        "principal": entry["principal"],
        "dataset": entry["dataset"],
        "version": entry.get("version"),
        "grant_id": entry.get("grant_id"),
        "detail": entry.get("detail", ""),
    }


def audit(session: Session, **entry: Unpack[AuditEntry]) -> None:
    """Add an audit event to the session's transaction (it commits with what it records)."""
    session.add(AuditEvent(**_row(entry)))


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

    def record(self, *, connection: Any = None, **entry: Unpack[AuditEntry]) -> None:
        """Store one event; returns once it is committed, raises if it could not be. A leader
        commits on ``connection`` (a pooled DBAPI connection the caller holds, e.g. the one
        its read was authorized on) if given, else on one of its own."""
        mine = _Pending(row=_row(entry))
        with self._pending_lock:
            self._pending.append(mine)
        with self._commit_lock:
            # Another leader may have committed ours while we waited for the lock.
            if not mine.done:  # then it is still pending: lead, committing all that is
                self._commit_pending(connection)
        if mine.error is not None:
            raise mine.error

    def _commit_pending(self, connection: Any) -> None:
        with self._pending_lock:
            batch, self._pending = self._pending, []
        try:
            _insert_events(_engine_of(self._engine), [p.row for p in batch], connection)
        except BaseException as exc:  # every event of the batch learns it failed
            for p in batch:
                p.error, p.done = exc, True
        else:
            for p in batch:
                p.done = True


_AUDIT_COLUMNS = ("time", "action", "principal", "dataset", "version", "grant_id", "detail")
_insert_sql: dict[str, tuple[str, list[Any]]] = {}


def _insert_events(engine: Engine, rows: list[dict[str, Any]], connection: Any = None) -> None:
    """INSERT the rows in one transaction on DBAPI ``connection``, or on one from the pool
    (the statement compiled once per dialect: SQLAlchemy's per-statement work cost more than
    SQLite's)."""
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
    raw = engine.raw_connection() if connection is None else connection
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
        if connection is None:
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
