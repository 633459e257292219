"""What every command module shares: the consoles, the ``--json`` option, the client built
from the global options (kept in the root context's ``obj``, never in the environment), tables
that wrap, and the small formatters for sizes, counts, times and key ids.

One unit convention: sizes are printed in binary units (KiB, MiB, GiB: powers of 1024), in
summaries and progress bars alike; sizes given as options accept both (``64MiB``, ``64MB``)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.table import Table

    from ostraca.client.api import RegistryClient
    from ostraca.client.cards import Current, NamespaceTrust
    from ostraca.client.config import ClientConfig

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]


class UserInterruptError(Exception):
    """Ctrl-C during a command that can say what was left and how to resume (exit 130)."""

    code = "interrupted"


def overrides(ctx: typer.Context) -> dict[str, Any]:
    """The global options given before the command (``--registry``, ``--identity``, …) as
    keyword arguments of :func:`~ostraca.client.config.load_config`."""
    obj = ctx.find_root().obj
    return dict(obj) if isinstance(obj, dict) else {}


def config(ctx: typer.Context, **extra: Any) -> ClientConfig:
    """Defaults < ``config.json`` < environment < global options < this command's ``extra``."""
    from ostraca.client.config import load_config  # noqa: PLC0415 - keeps --help fast

    values = overrides(ctx)
    values.update({k: v for k, v in extra.items() if v is not None})
    return load_config(**values)


def client(ctx: typer.Context) -> RegistryClient:
    """A registry client for this command, closed when the command ends."""
    from ostraca.client.api import RegistryClient  # noqa: PLC0415 - keeps --help fast

    registry_client = RegistryClient(config(ctx))
    ctx.call_on_close(registry_client.close)
    return registry_client


def resolve_trusted(
    registry: RegistryClient, dataset: str, version: int | None
) -> tuple[NamespaceTrust, Current]:
    """``dataset`` at ``version`` (without one: the newest version not deprecated) verified
    through the trust store, as every read is: the pinned key (or its rotation chain), never
    whatever key the registry offers today; a rollback below what was verified is refused. A
    newly pinned key is announced and a deprecated version warned of, on stderr."""
    from ostraca.client.cards import NamespaceTrust, resolve_current  # noqa: PLC0415

    trust = NamespaceTrust.of(
        registry, dataset, announce=lambda text: err_console.print(text, markup=False)
    )
    current = resolve_current(
        registry,
        dataset,
        version=version,
        trust=trust,
        warn=lambda text: err_console.print(f"warning: {text}", markup=False, highlight=False),
    )
    return trust, current


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def size(n: int) -> str:
    """Binary units: ``512 B``, ``1.5 KiB``, ``64.0 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 shard``, ``3 shards``, ``1,000 rows``; ``plural`` where it is not ``noun + "s"``."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {plural or noun + 's'}"


def short(keyid: str | None) -> str:
    return "-" if not keyid else keyid[:16] + "…"


def table(*headers: str, title: str | None = None) -> Table:
    """A table whose cells wrap at the terminal's width (a long name folds onto the next
    line) instead of being cut."""
    from rich.table import Table  # noqa: PLC0415 - keeps --help fast

    out = Table(title=title)
    for header in headers:
        out.add_column(header, overflow="fold")
    return out
