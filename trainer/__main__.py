"""``python -m ostraca.trainer …`` (also under ``torchrun``): the trainer's commands alone."""

from __future__ import annotations

import typer

from .cli import register_trainer_commands

app = typer.Typer(name="ostraca-trainer", no_args_is_help=True, pretty_exceptions_enable=False)
register_trainer_commands(app)

if __name__ == "__main__":
    app()
