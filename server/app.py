"""The registry's FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from ostraca.protocol_spec.models import utc_now

from . import (
    openapi,
    problems,
    routes_access,
    routes_auth,
    routes_blobs,
    routes_cards,
    routes_croissant,
    routes_datasets,
    routes_keys,
    routes_log,
    routes_ops,
    routes_reads,
    web,
)
from .db import Database, make_engine
from .delivery import open_blob_store
from .deps import AppContext, Clock
from .limits import BodyLimitMiddleware
from .metrics import Metrics, ObservabilityMiddleware
from .migrate import require_head
from .settings import Settings
from .storage import BlobStorage
from .zerocopy import offer


class Registry(FastAPI):
    """The FastAPI app, given the server's zero-copy send where the server can do it
    (``zerocopy.offer``): large blob reads then go from the page cache to the socket."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, offer(scope, send))


def create_app(
    settings: Settings, *, clock: Clock = utc_now, storage: BlobStorage | None = None
) -> FastAPI:
    """Build the registry. Refuses a database that is not at the newest migration.

    ``clock`` returns the current UTC time to the second (tests inject a movable one);
    ``storage`` replaces the store named by ``settings.storage_url``.
    """
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.sqlalchemy_url
    require_head(url)
    engine = make_engine(url)
    ctx = AppContext(
        settings=settings,
        db=Database(engine),
        storage=storage if storage is not None else open_blob_store(settings),
        clock=clock,
        metrics=Metrics(),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = Registry(
        title="Ostraca registry",
        version="1",
        summary="Signed dataset manifests over Arrow shards, signed access grants.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    problems.install(app)
    for module in (
        routes_reads,  # first: the hot routes match before any other is tried
        routes_auth,
        routes_datasets,
        routes_blobs,
        routes_access,
        routes_keys,
        routes_ops,
        routes_cards,
    ):
        app.include_router(module.router, responses=problems.PROBLEM_RESPONSES)
    app.include_router(routes_croissant.router, responses=problems.PROBLEM_RESPONSES)
    routes_log.install(app)
    web.install(app)
    openapi.install(app)
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    app.add_middleware(ObservabilityMiddleware, metrics=ctx.metrics)
    return app
