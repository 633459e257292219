"""The one ``ostraca`` command line.

The root knows every command by name, panel and one-line help (:data:`COMMANDS`) and imports
a command's module only when that command runs, so ``ostraca --help`` loads Typer and nothing
of the SDK, the server or torch. Every failure prints one line — ``error [code] message (what
to do next)`` — and exits with a status that says what kind of failure it was:

====  ==========================================================
0     success
1     an error (the line says which)
2     a usage error (a bad or missing option or argument)
3     access revoked or expired
130   interrupted (Ctrl-C)
====  ==========================================================
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Annotated, Any

import typer
from typer import _click as click
from typer.core import TyperCommand, TyperGroup

from .common import UserInterruptError

__all__ = ["COMMANDS", "EXIT_INTERRUPTED", "EXIT_REVOKED", "EXIT_USAGE", "app", "main", "run"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REVOKED = 3
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class LazyCommand:
    """A command the root lists without importing it: ``target`` is ``module:attribute``,
    a Typer app (or a function that adds commands to one) holding the command ``name``, or
    the whole group when ``whole``. ``extra`` names the optional dependencies it needs."""

    name: str
    target: str
    help: str
    panel: str
    extra: str | None = None
    whole: bool = False


def _panel(
    panel: str, target: str, *commands: tuple[str, str], extra: str | None = None
) -> tuple[LazyCommand, ...]:
    return tuple(LazyCommand(name, target, text, panel, extra) for name, text in commands)


COMMANDS: tuple[LazyCommand, ...] = (
    *_panel(
        "Identity",
        "ostraca.cli.identity:app",
        ("keygen", "Create an Ed25519 identity (PKCS#8 PEM, mode 0600)."),
        ("register", "Register this identity's public key with the registry"),
        ("login", "Log in: sign the registry's challenge and cache a short-lived token."),
        ("logout", "Revoke the cached token on the registry and forget it."),
        ("whoami", "Who the registry thinks you are."),
        ("rotate-key", "Replace this identity's key"),
    ),
    *_panel(
        "Publisher",
        "ostraca.cli.publisher:app",
        ("namespace", "Namespaces: an institution publishes datasets under its own."),
        ("publish", "Publish files as the next version of a dataset"),
        ("approve", "Grant a pending request"),
        ("deny", "Deny a pending request."),
        ("revoke", "Revoke a grant"),
        ("audit", "The registry's log of every decision about a dataset (publisher only)."),
        ("rekey", "Re-encrypt a dataset's latest rows under fresh data keys"),
    ),
    *_panel(
        "Publisher",
        "ostraca.cli.cards:app",
        ("card", "A dataset's card (description and README), signed"),
        ("deprecate", "Deprecate a version"),
    ),
    *_panel(
        "Researcher",
        "ostraca.cli.researcher:app",
        ("datasets", "List datasets on the registry (metadata is public)."),
        ("show", "A dataset's licence, terms, schema, sizes and versions"),
        ("request", "Ask a publisher for access."),
        ("requests", "Access requests: a publisher's inbox, or your own requests."),
        ("grants", "Grants you issued (publisher) or hold (researcher)."),
    ),
    *_panel(
        "Data",
        "ostraca.cli.stream:app",
        ("stream", "Preview the first rows of a dataset, verified as they stream."),
        ("pull", "Download and verify a whole dataset version"),
        ("verify", "Re-verify a pulled copy"),
        ("cache", "The local shard cache."),
    ),
    *_panel(
        "Data",
        "ostraca.cli.data:app",
        ("croissant", "Croissant JSON-LD metadata of a dataset version"),
        ("export", "Write a dataset version as Parquet or Arrow IPC files"),
    ),
    *_panel(
        "Training",
        "ostraca.trainer.cli:register_trainer_commands",
        ("train", "Train a Transformer on a verified dataset you hold a grant for"),
        ("generate", "Sample text from a trained run."),
        ("attest", "Sign a TrainingAttestation for the run's checkpoint"),
        ("verify-attestation", "Verify a run's attestation"),
        extra="train",
    ),
    *_panel(
        "Setup",
        "ostraca.cli.config:app",
        ("config", "Show or change this client's settings ($OSTRACA_HOME/config.json)."),
    ),
    LazyCommand(
        "log",
        "ostraca.cli.log:app",
        "Monitor the registry's transparency log.",
        "Setup",
        whole=True,
    ),
    LazyCommand(
        "witness",
        "ostraca.cli.witness:app",
        "Run a witness that cosigns registries' log checkpoints.",
        "Setup",
        extra="server",
        whole=True,
    ),
    LazyCommand(
        "server",
        "ostraca.server.cli:server_app",
        "Run the registry server and manage its database.",
        "Setup",
        extra="server",
        whole=True,
    ),
    *_panel(
        "Setup",
        "ostraca.cli.demo:app",
        ("demo", "The whole story end to end on the embedded default"),
        extra="all",
    ),
)
_BY_NAME = {c.name: c for c in COMMANDS}


class MissingExtraError(Exception):
    """A command needs an optional dependency that is not installed (see :func:`load`)."""

    code = "missing_extra"


def load(spec: LazyCommand) -> click.Command:
    """Import ``spec``'s module and return its real command (a missing optional dependency
    becomes :class:`MissingExtraError`, naming the extra to install)."""
    module_name, attr = spec.target.split(":")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if spec.extra is None or missing in ("", "ostraca"):
            raise
        raise MissingExtraError(
            f"`ostraca {spec.name}` needs the {spec.extra!r} extra ({missing} is not installed): "
            f"pip install 'ostraca[{spec.extra}]'"
        ) from exc
    if not isinstance(target, typer.Typer):
        holder = typer.Typer()
        target(holder)
        target = holder
    command = typer.main.get_command(target)
    if spec.whole or not isinstance(command, TyperGroup):  # a one-command app is that command
        command.name = spec.name
        return command
    found = command.get_command(click.Context(command), spec.name)
    assert found is not None, f"{spec.target} has no command {spec.name}"
    return found


class LazyGroup(TyperGroup):
    """The root group: lists :data:`COMMANDS` from the table, imports one only to run it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *_BY_NAME]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = _BY_NAME.get(cmd_name)
        if spec is None:
            return super().get_command(ctx, cmd_name)
        if ctx.resilient_parsing:  # shell completion: it needs the real options
            return load(spec)
        # For listing only: the help table needs a name, a line and a panel, not the command.
        return TyperCommand(
            spec.name, help=spec.help, short_help=spec.help, rich_help_panel=spec.panel
        )

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        spec = _BY_NAME.get(args[0]) if args else None
        if spec is None:
            return super().resolve_command(ctx, args)
        return spec.name, load(spec), args[1:]


app = typer.Typer(
    name="ostraca",
    cls=LazyGroup,
    help="Share licensed training data: signed manifests, signed grants, verified streaming.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ostraca {dist_version('ostraca')}")
        raise typer.Exit


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show version."),
    ] = False,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry", help="Registry URL (else env OSTRACA_REGISTRY, else config.json)."
        ),
    ] = None,
    identity: Annotated[
        Path | None,
        typer.Option(
            "--identity",
            help="Private key file (else env OSTRACA_IDENTITY, else $OSTRACA_HOME/identity.pem).",
        ),
    ] = None,
    passphrase_env: Annotated[
        str | None,
        typer.Option("--passphrase-env", help="Environment variable holding the key passphrase."),
    ] = None,
) -> None:
    """Share licensed training data: signed manifests, signed grants, verified streaming."""
    given = {"registry": registry, "identity": identity, "passphrase_env": passphrase_env}
    ctx.obj = {k: v for k, v in given.items() if v is not None}


def _fail(code: str, message: str, status: int = EXIT_ERROR) -> int:
    from rich.console import Console  # noqa: PLC0415 - only on failure
    from rich.markup import escape  # noqa: PLC0415

    line = " ".join(message.split())
    Console(stderr=True, soft_wrap=True).print(
        "[bold red]error[/] " + escape(f"[{code}] {line}"), highlight=False
    )
    return status


def _failure(exc: BaseException) -> int:
    """The exit status for ``exc``, after printing its one line."""
    from ostraca.protocol_spec.errors import (  # noqa: PLC0415 - only on failure
        ExpiredError,
        OstracaError,
        RevokedError,
    )

    if isinstance(exc, OstracaError):
        status = EXIT_REVOKED if isinstance(exc, RevokedError | ExpiredError) else EXIT_ERROR
        return _fail(exc.code, str(exc), status)
    if isinstance(exc, MissingExtraError):
        return _fail(exc.code, str(exc))
    if isinstance(exc, UserInterruptError):
        return _fail(exc.code, str(exc), EXIT_INTERRUPTED)
    if isinstance(exc, OSError):
        return _fail("os_error", f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    raise exc


GLOBAL_OPTIONS = ("--registry", "--identity", "--passphrase-env")


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """Global options may follow the command too (``ostraca datasets --registry URL``): move
    each one, with its value, in front of the command, where the root parses it. Nothing after
    ``--`` moves."""
    front: list[str] = []
    rest: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS and rest:
            takes_next = "=" not in arg and i + 1 < len(args)
            front.extend(args[i : i + 2] if takes_next else [arg])
            i += 2 if takes_next else 1
            continue
        rest.append(arg)
        i += 1
    return front + rest


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    try:
        result: Any = app(
            args=hoist_global_options(sys.argv[1:] if argv is None else argv),
            prog_name="ostraca",
            standalone_mode=False,
        )
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()
        return 0
    except click.ClickException as exc:  # a usage error: point at the help of its command
        where = getattr(exc, "ctx", None)
        command = "ostraca" if where is None else where.command_path
        return _fail("usage", f"{exc.format_message()} (see `{command} --help`)", EXIT_USAGE)
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _fail(
            "interrupted", "interrupted; run the same command again to resume", EXIT_INTERRUPTED
        )
    except Exception as exc:
        return _failure(exc)
    return result if isinstance(result, int) else 0


def main() -> None:
    """Entry point: run the CLI and exit with its status."""
    sys.exit(run())
