"""CLI commands of verified streaming: ``pull``, ``verify``, ``stream``, ``cache info|clear``.

Errors are :class:`~ostraca.protocol_spec.OstracaError` and are printed by the CLI's ``main``
(code, message, hint; exit status 1). ``verify`` prints a report and exits 1 on any failed
check, or 3 when the grant is revoked or expired (the registry is asked about revocation when
it can be reached; else the report says "revocation not checked (offline)").

The ``pull`` bar counts the bytes that come over the network: a shard already in the copy, in
the cache or partly downloaded shrinks the bar's total by what was there, so neither the speed
nor the time left counts bytes that never moved. It counts in binary units, as every size the
CLI prints does.

Every command here takes ``--json``: ``pull``, ``verify`` and ``cache`` print one JSON object
(``verify`` still exits 1 or 3 after it), ``stream`` one JSON object per row.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TimeRemainingColumn,
)
from rich.text import Text

from ostraca.client.cache import BlobCache
from ostraca.client.pull import CopyReport, pull, verify_copy
from ostraca.client.stream import open_dataset, parse_ref

from .common import JsonOpt, client, config, console, count, err_console, print_json, size, table

app = typer.Typer()

RegistryOpt = Annotated[
    str | None, typer.Option("--registry", help="Registry URL [default: configured]")
]


class BinarySpeedColumn(ProgressColumn):
    """Transfer speed in binary units (rich's own column counts in powers of 1000)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        shown = "?" if speed is None else f"{size(int(speed))}/s"
        return Text(shown, style="progress.data.speed")


def _columns(text: str | None) -> list[str] | None:
    if text is None:
        return None
    cols = [c.strip() for c in text.split(",") if c.strip()]
    return cols or None


@app.command("pull")
def pull_command(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="ns/name or ns/name@version")],
    directory: Annotated[Path, typer.Argument(help="Where to write the copy")],
    registry: RegistryOpt = None,
    parallel: Annotated[int, typer.Option(help="Shards downloaded at once.")] = 3,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Download and verify a whole dataset version: manifest, grant, shards, chunk lists."""
    dataset, version = parse_ref(ref)
    settings = config(ctx, registry=registry)
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(binary_units=True),
        BinarySpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet or as_json,
    )
    task: list[TaskID] = []
    left = [0]

    def on_start(shards: int, total: int) -> None:
        left[0] = total
        task.append(progress.add_task(f"{dataset} ({count(shards, 'shard')})", total=total))

    def on_progress(transferred: int, present: int) -> None:
        if present:  # already here: not part of what is transferred
            left[0] -= present
            progress.update(task[0], total=left[0])
        progress.advance(task[0], transferred)

    with progress:
        result = pull(
            dataset,
            directory,
            version=version,
            config=settings,
            parallel=parallel,
            on_start=on_start,
            on_progress=on_progress,
        )
    if as_json:
        print_json(dataclasses.asdict(result))
        return
    console.print(
        f"pulled {result.dataset}@{result.version}: {count(result.shards, 'shard')}, "
        f"{size(result.bytes)} ({size(result.downloaded_bytes)} downloaded) → "
        f"{result.directory}\nmanifest {result.manifest_digest}\ngrant    {result.grant_id}",
        highlight=False,
    )


def _report_json(report: CopyReport) -> dict[str, Any]:
    return {
        "directory": str(report.directory),
        "dataset": report.dataset,
        "version": report.version,
        "ok": report.ok and report.access_ended is None,
        "checks": [dataclasses.asdict(c) for c in report.checks],
        "revocation": report.revocation,
        "access_ended": None if report.access_ended is None else report.access_ended.code,
    }


@app.command("verify")
def verify_command(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="A directory written by `ostraca pull`")],
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not ask the registry about revocation.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-verify a pulled copy: signatures, grant, every shard and chunk digest (offline), and
    whether the grant was revoked (asking the registry, when it can be reached). Exits 1 when a
    check fails, 3 when the grant is revoked or expired."""
    registry = None if offline else client(ctx)
    report = verify_copy(directory, home=config(ctx).home, client=registry)
    if as_json:
        print_json(_report_json(report))
        if report.access_ended is not None:
            raise report.access_ended
        if not report.ok:
            raise typer.Exit(1)
        return
    for check in report.checks:
        mark = "[green]ok  [/]" if check.ok else "[bold red]FAIL[/]"
        console.print(f"{mark} {check.what}: {check.detail}", highlight=False)
    console.print(report.revocation, highlight=False)
    if report.access_ended is not None:
        raise report.access_ended
    if report.ok:
        name = f"{report.dataset}@{report.version}"
        console.print(f"[green]verified[/] {name}: {count(len(report.checks), 'check')} passed")
        return
    failed = f"{len(report.failures)} of {count(len(report.checks), 'check')} failed"
    console.print(f"[bold red]{failed}[/] in {directory}", highlight=False)
    raise typer.Exit(1)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


@app.command("stream")
def stream_command(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="ns/name or ns/name@version")],
    head: Annotated[int, typer.Option(help="Rows to show.")] = 5,
    columns: Annotated[str | None, typer.Option(help="Comma-separated columns.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per row (JSON lines).")
    ] = False,
    registry: RegistryOpt = None,
    width: Annotated[int, typer.Option(help="Truncate shown values to this many chars.")] = 60,
) -> None:
    """Preview the first rows of a dataset, verified as they stream."""
    dataset, version = parse_ref(ref)
    settings = config(ctx, registry=registry)
    rows: list[dict[str, Any]] = []
    with open_dataset(
        dataset, version=version, columns=_columns(columns), config=settings, prefetch=0
    ) as ds:
        schema = ds.schema
        batches = ds.iter_batches()
        try:
            for batch in batches:
                rows.extend(batch.slice(0, head - len(rows)).to_pylist())
                if len(rows) >= head:
                    break
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        prov = ds.provenance
    if as_json:
        sys.stdout.writelines(json.dumps(_jsonable(row), ensure_ascii=False) + "\n" for row in rows)
        return
    shown = table(
        *(f"{name}\n[dim]{schema.field(name).type}[/]" for name in schema.names),
        title=f"{prov.dataset}@{prov.version} ({prov.license})",
    )
    for row in rows:
        cells = []
        for name in schema.names:
            text = str(_jsonable(row[name]))
            cells.append(text if len(text) <= width else text[: width - 1] + "…")
        shown.add_row(*cells)
    console.print(shown)
    err_console.print(
        f"manifest {prov.manifest_digest[:16]}…  grant {prov.grant_id[:16]}…  verified",
        highlight=False,
    )


cache_app = typer.Typer(help="The local shard cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Where the cache is, how full, its budget."""
    settings = config(ctx)
    info = BlobCache(settings.cache_path, budget=settings.cache_bytes).info()
    if as_json:
        print_json(dataclasses.asdict(info))
        return
    console.print(
        f"cache   {info.root}\nblobs   {info.blobs:,}\nsize    {size(info.bytes)}\n"
        f"budget  {size(info.budget)}\npartial {size(info.partial_bytes)}",
        highlight=False,
    )


@cache_app.command("clear")
def cache_clear(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Remove every cached blob (and abandoned partial downloads)."""
    settings = config(ctx)
    freed = BlobCache(settings.cache_path, budget=settings.cache_bytes).clear()
    if as_json:
        print_json({"freed_bytes": freed})
        return
    console.print(f"freed {size(freed)}", highlight=False)
