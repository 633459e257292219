"""Operations: health and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from ostraca.protocol_spec.errors import OstracaError
from ostraca.protocol_spec.wire import (
    Health,
)

from .deps import ContextDep
from .metrics import exposition
from .storage import is_full

router = APIRouter(tags=["operations"])


@router.get("/healthz", responses={503: {"model": Health}})
def healthz(ctx: ContextDep, response: Response) -> Health:
    database = storage = "ok"
    try:
        with ctx.db.read_session() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure is "unhealthy", reported, not raised
        database = f"error: {type(exc).__name__}"
    try:
        ctx.storage.check()
    except OSError as exc:
        storage = "full" if is_full(exc) else f"error: {type(exc).__name__}"
    except OstracaError as exc:  # an S3 store that cannot be reached or refuses the registry
        storage = f"error: {exc.code}"
    # A full store still serves reads, logins and metadata: degraded, but not down (503).
    if database != "ok" or storage not in {"ok", "full"}:
        response.status_code = 503
    healthy = database == "ok" and storage == "ok"
    return Health(status="ok" if healthy else "degraded", database=database, storage=storage)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
def metrics(ctx: ContextDep) -> Response:
    return Response(exposition(ctx.metrics), media_type=CONTENT_TYPE_LATEST)
