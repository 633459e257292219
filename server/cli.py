"""``ostraca server ...``: run the registry and migrate its database.

The root ``ostraca`` CLI mounts :data:`server_app`; settings come from ``OSTRACA_*`` variables.
"""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from ostraca.protocol_spec.errors import MalformedError

from .app import create_app
from .metrics import configure_logging, multiprocess_metrics
from .migrate import current_revision, database_errors, downgrade_to_base, upgrade_to_head
from .settings import Settings

server_app = typer.Typer(
    name="server",
    help="Run the registry server and manage its database.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(_setting_problem(e["loc"], e["msg"]) for e in exc.errors())
        raise MalformedError(f"invalid settings: {problems}") from exc


def _setting_problem(loc: tuple[int | str, ...], message: str) -> str:
    message = message.removeprefix("Value error, ")
    return f"OSTRACA_{'_'.join(map(str, loc)).upper()}: {message}" if loc else message


@server_app.command()
def migrate(
    downgrade_base: Annotated[
        bool, typer.Option("--downgrade-base", help="Drop every table (all data is lost).")
    ] = False,
) -> None:
    """Upgrade the database to the newest schema (or, with --downgrade-base, drop it)."""
    settings = _settings()
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.sqlalchemy_url
    if downgrade_base:
        downgrade_to_base(url)
    else:
        upgrade_to_head(url)
    typer.echo(f"database at migration {current_revision(url) or '(none)'}")


@server_app.command()
def run(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    do_migrate: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Upgrade the database first.")
    ] = True,
) -> None:
    """Serve the registry with uvicorn (migrating the database first, unless --no-migrate)."""
    if do_migrate:
        migrate(downgrade_base=False)
    configure_logging()
    settings = _settings()
    with database_errors(settings.sqlalchemy_url):
        app = create_app(settings)  # the database and the blob store checked before any worker
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    with multiprocess_metrics():
        uvicorn.run(
            "ostraca.server.cli:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
        )


def app_from_env() -> FastAPI:
    """App factory for multi-worker uvicorn: each worker builds its app from the environment."""
    configure_logging()
    return create_app(Settings())
