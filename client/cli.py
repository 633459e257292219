"""The ``ostraca`` command line. Each failure prints one line — the error's code, what went
wrong, what to do next — and exits non-zero."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ostraca.protocol_spec import OstracaError, SigningKey

from .keystore import public_path, save_signing_key

app = typer.Typer(
    name="ostraca",
    help="Share licensed training data: signed manifests, signed grants, verified streaming.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def ostraca_home() -> Path:
    """Where identities and configuration live: ``$OSTRACA_HOME`` or ``~/.ostraca``."""
    return Path(os.environ.get("OSTRACA_HOME", Path.home() / ".ostraca"))


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"ostraca {dist_version('ostraca')}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show version."),
    ] = False,
) -> None:
    """Share licensed training data: signed manifests, signed grants, verified streaming."""


class Kind(StrEnum):
    institution = "institution"
    researcher = "researcher"


@app.command()
def keygen(
    out: Annotated[
        Path | None, typer.Option(help="Private key file [default: $OSTRACA_HOME/identity.pem]")
    ] = None,
    name: Annotated[str, typer.Option(help="Display name registered with the key.")] = "",
    kind: Annotated[Kind, typer.Option(help="Who this identity is.")] = Kind.researcher,
    affiliation: Annotated[str, typer.Option(help="Institution or group.")] = "",
    passphrase_env: Annotated[
        str | None,
        typer.Option(help="Encrypt the key with the passphrase in this environment variable."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing key file.")] = False,
) -> None:
    """Create an Ed25519 identity (PKCS#8 PEM, mode 0600). The private key never leaves here."""
    path = out or ostraca_home() / "identity.pem"
    passphrase = None
    if passphrase_env is not None:
        passphrase = os.environ.get(passphrase_env)
        if not passphrase:
            raise OstracaError(f"environment variable {passphrase_env} is empty or unset")
    key = SigningKey.generate()
    profile = {"name": name or path.stem, "kind": kind.value, "affiliation": affiliation}
    save_signing_key(key, path, passphrase=passphrase, profile=profile, overwrite=force)
    console.print(f"key id  {key.keyid}\nprivate {path}\npublic  {public_path(path)}")


def main() -> None:
    """Entry point: run the CLI, turning our errors into one clear line and exit status 1."""
    try:
        app(standalone_mode=False)
    except OstracaError as exc:
        err_console.print(f"[bold red]error[/] [{exc.code}] {exc}", highlight=False, markup=True)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
