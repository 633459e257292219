"""``ostraca witness run``: a witness (c2sp.org/tlog-witness) for one or more registries' logs.

It cosigns each checkpoint a log submits to ``POST /add-checkpoint`` once it has checked the
checkpoint's signature and its consistency with the last one it cosigned (``server/witness.py``).
Registries submit to it when ``OSTRACA_LOG_WITNESSES`` lists its URL; clients trust it when
their ``$OSTRACA_HOME/log.json`` lists its vkey (printed at start and at ``GET /key``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from ostraca.server.witness import Witness, create_witness_app

app = typer.Typer(help="Run a witness that cosigns registries' log checkpoints.")


@app.callback()
def witness() -> None:
    """Run a witness that cosigns registries' log checkpoints."""


@app.command()
def run(
    log: Annotated[
        list[str], typer.Option("--log", help="A log to witness, as its vkey (repeatable).")
    ],
    name: Annotated[str, typer.Option(help="The witness's key name, e.g. witness.example.org")],
    data_dir: Annotated[
        Path, typer.Option(help="Where the witness keeps its key and state.")
    ] = Path("./ostraca-witness"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
) -> None:
    """Run a witness: cosign the checkpoints the logs submit, once consistent."""
    data_dir.mkdir(parents=True, exist_ok=True)
    witness = Witness.open(
        name=name, key_path=data_dir / "witness.key", log_vkeys=log, data_dir=data_dir
    )
    typer.echo(f"witness key {witness.vkey}")
    uvicorn.run(create_witness_app(witness), host=host, port=port, log_level="info")
