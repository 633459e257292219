"""The transparency log's endpoints (protocol_spec/LOG.md section 10): the latest signed
checkpoint, the log key, inclusion proofs by index and by statement id, consistency and range
proofs, and entry ranges. Everything but the checkpoint is immutable for a given tree size and
is served as cacheable.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from ostraca.protocol_spec.errors import MalformedError, NotFoundError
from ostraca.protocol_spec.keys import SigningKey
from ostraca.protocol_spec.merkle import (
    ConsistencyProof,
    InclusionProof,
    consistency_proof,
    inclusion_proof,
    range_proof,
)

from . import problems
from .deps import ContextDep, ReadSessionDep
from .parsing import require_uint
from .tlog import (
    LogEntry,
    LogSettings,
    latest_checkpoint,
    load_log_key,
    log_vkey,
    read_head,
    with_nodes,
)
from .witness import WitnessPool

router = APIRouter(prefix="/v1/log", tags=["log"])

MAX_ENTRIES = 10_000
"""Entries per page of ``GET /v1/log/entries``."""
MAX_BUNDLE_BYTES = 8 * 1024 * 1024
"""Bytes per page of ``GET /v1/log/entries`` (a larger single entry is served alone)."""
BUNDLE_TYPE = "application/vnd.ostraca.log-entries"
MAX_PROOFS = 16
"""Statements and scans one ``GET /v1/log/proofs`` may ask for."""
IMMUTABLE = "public, max-age=31536000, immutable"
NOTE_TYPE = "text/plain; charset=utf-8"

PROOF_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "A proof as LOG.md section 4 and 10 define it (JSON)"}
}
"""The proofs are plain JSON objects specified in LOG.md (their wire models are still to join
``protocol_spec.wire``), so the OpenAPI document names no schema for them."""

Size = Annotated[int, Query(ge=0, le=2**63 - 1)]


@dataclass(frozen=True, slots=True)
class LogService:
    key: SigningKey
    settings: LogSettings
    witnesses: WitnessPool

    @property
    def origin(self) -> str:
        return self.settings.origin


def install(app: FastAPI) -> None:
    """Load (or create) the log key and serve the log under ``/v1/log``."""
    settings = LogSettings().resolved(app.state.ctx.settings.data_dir)
    assert settings.key_path is not None
    app.state.tlog = LogService(
        key=load_log_key(settings.key_path),
        settings=settings,
        witnesses=WitnessPool(settings.witnesses),
    )
    app.include_router(router, responses=problems.PROBLEM_RESPONSES)


def _service(request: Request) -> LogService:
    service: LogService = request.app.state.tlog
    return service


def _tree_size(session: Session, tree_size: int) -> int:
    size = read_head(session).size
    if tree_size > size:
        raise NotFoundError(f"the log has {size} entries, not {tree_size}")
    return tree_size


def _json(body: dict[str, Any]) -> Response:
    return JSONResponse(body, headers={"Cache-Control": IMMUTABLE})


@router.get("/checkpoint", response_class=Response)
def get_checkpoint(ctx: ContextDep, request: Request) -> Response:
    """The latest signed checkpoint (C2SP signed note), re-signed when older than the interval."""
    log = _service(request)
    with ctx.db.begin() as session:
        note, fresh = latest_checkpoint(
            session,
            key=log.key,
            origin=log.origin,
            now=ctx.clock(),
            interval=log.settings.interval,
        )
    if fresh and log.witnesses:
        with ctx.db.begin() as session:
            note = log.witnesses.cosign(session, note)
    return Response(note, media_type=NOTE_TYPE, headers={"Cache-Control": "no-cache"})


@router.get("/key", response_class=Response)
def get_key(request: Request) -> Response:
    """The log's public key as a note vkey (pinned by clients on first use)."""
    log = _service(request)
    return Response(log_vkey(log.origin, log.key) + "\n", media_type=NOTE_TYPE)


@router.get("/proof/inclusion", response_class=Response, responses=PROOF_DOC)
def get_inclusion(index: Size, tree_size: Size, session: ReadSessionDep) -> Response:
    size = _tree_size(session, tree_size)
    hashes = with_nodes(session, size, lambda node: inclusion_proof(index, size, node))
    return _json(InclusionProof(index=index, tree_size=size, hashes=tuple(hashes)).to_dict())


@router.get("/proof/consistency", response_class=Response, responses=PROOF_DOC)
def get_consistency(old_size: Size, new_size: Size, session: ReadSessionDep) -> Response:
    return _json(_consistency(session, old_size, _tree_size(session, new_size)))


@router.get("/proof/range", response_class=Response, responses=PROOF_DOC)
def get_range(start: Size, tree_size: Size, session: ReadSessionDep) -> Response:
    return _json(_range(session, start, _tree_size(session, tree_size)))


@router.get("/statements/{statement_id}", response_class=Response, responses=PROOF_DOC)
def get_statement(statement_id: str, tree_size: Size, session: ReadSessionDep) -> Response:
    """The entry of a statement (by its id) and its inclusion proof in the tree of
    ``tree_size``: ``{"index", "entry", "proof"}``."""
    return _json(_statement(session, statement_id, _tree_size(session, tree_size)))


@router.get("/proofs", response_class=Response, responses=PROOF_DOC)
def get_proofs(
    tree_size: Size,
    session: ReadSessionDep,
    statements: Annotated[str, Query(max_length=MAX_PROOFS * 65)] = "",
    scans: Annotated[str, Query(max_length=MAX_PROOFS * 85)] = "",
    old_size: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Response:
    """What a client checks before relying on statements, in one answer (LOG.md 10): the
    consistency proof from ``old_size``, each of ``statements``' (comma-separated ids) entry and
    inclusion proof, and for each of ``scans`` (``<grant id>`` or ``<grant id>:<start>``) the
    range proof from ``start`` (default: after the grant's entry) with the first page of those
    entries, base64."""
    size = _tree_size(session, tree_size)
    answered = []
    for item in _ids(scans):
        grant_id, _, given = item.partition(":")
        start = require_uint(given, "scan start") if given else None
        if start is None:
            start = int(_statement(session, grant_id, size)["index"]) + 1
        page, _count = _bundle(session, start, size)
        answered.append({**_range(session, start, size), "entries": _b64([page])[0]})
    return _json(
        {
            "tree_size": size,
            "consistency": None if old_size is None else _consistency(session, old_size, size),
            "statements": [_statement(session, sid, size) for sid in _ids(statements)],
            "scans": answered,
        }
    )


def _ids(text: str) -> list[str]:
    items = text.split(",") if text else []
    if len(items) > MAX_PROOFS:
        raise MalformedError(f"at most {MAX_PROOFS} statements or scans at once")
    return items


def _consistency(session: Session, old_size: int, size: int) -> dict[str, Any]:
    hashes = with_nodes(session, size, lambda node: consistency_proof(old_size, size, node))
    return ConsistencyProof(old_size=old_size, new_size=size, hashes=tuple(hashes)).to_dict()


def _range(session: Session, start: int, size: int) -> dict[str, Any]:
    if start > size:
        raise MalformedError(f"range start {start} is beyond tree size {size}")
    hashes = with_nodes(session, size, lambda node: range_proof(start, node))
    return {"start": start, "tree_size": size, "hashes": _b64(hashes)}


def _statement(session: Session, statement_id: str, size: int) -> dict[str, Any]:
    row = session.execute(
        select(LogEntry.idx, LogEntry.data)
        .where(LogEntry.statement_id == statement_id[:64], LogEntry.idx < size)
        .order_by(LogEntry.idx)
        .limit(1)
    ).first()
    if row is None:
        raise NotFoundError(f"statement {statement_id[:64]} is not in the first {size} entries")
    index = int(row.idx)
    hashes = with_nodes(session, size, lambda node: inclusion_proof(index, size, node))
    proof = InclusionProof(index=index, tree_size=size, hashes=tuple(hashes))
    return {"index": index, "entry": _b64([bytes(row.data)])[0], "proof": proof.to_dict()}


@router.get("/entries", response_class=Response)
def get_entries(start: Size, end: Size, session: ReadSessionDep) -> Response:
    """Entries ``[start, end)`` as an *entry bundle* (LOG.md 10): each entry as its 4-byte
    big-endian length then its bytes. At most :data:`MAX_ENTRIES` entries and, past the first,
    :data:`MAX_BUNDLE_BYTES`; fewer past the tree's end."""
    if end < start:
        raise MalformedError(f"entry range end {end} is before its start {start}")
    body, count = _bundle(session, start, end)
    cache = IMMUTABLE if count == end - start else "no-cache"
    return Response(body, media_type=BUNDLE_TYPE, headers={"Cache-Control": cache})


def _bundle(session: Session, start: int, end: int) -> tuple[bytes, int]:
    rows = session.scalars(
        select(LogEntry.data)
        .where(LogEntry.idx >= start, LogEntry.idx < min(end, start + MAX_ENTRIES))
        .order_by(LogEntry.idx)
    )
    parts: list[bytes] = []
    total = count = 0
    for data in rows:
        if count and total + len(data) > MAX_BUNDLE_BYTES:
            break
        parts += (len(data).to_bytes(4, "big"), data)
        total, count = total + 4 + len(data), count + 1
    return b"".join(parts), count


def _b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in items]
