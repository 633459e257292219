"""``ostraca config show|set``: this client's settings."""

from __future__ import annotations

from typing import Annotated

import typer

from ostraca.client.config import CONFIG_KEYS, set_config_value

from .common import JsonOpt, config, console, print_json

app = typer.Typer()
config_app = typer.Typer(help="Show or change this client's settings ($OSTRACA_HOME/config.json).")
app.add_typer(config_app, name="config", no_args_is_help=True)


@config_app.command("show")
def config_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The effective settings (file, environment and flags combined)."""
    data = config(ctx).to_dict()
    if as_json:
        print_json(data)
    else:
        for k, v in data.items():
            console.print(f"{k:<15} {v if v is not None else '-'}", highlight=False)


@config_app.command("set")
def config_set(
    key: Annotated[str, typer.Argument(help=f"One of: {', '.join(CONFIG_KEYS)}.")],
    value: Annotated[str, typer.Argument(help="The new value.")],
) -> None:
    """Store a setting in $OSTRACA_HOME/config.json."""
    path = set_config_value(key, value)
    console.print(f"{key} = {value} (in {path})", highlight=False)


# ── entry point ──────────────────────────────────────────────────────────────────────────────
