"""CLI commands that take data out: ``croissant`` (metadata) and ``export`` (files).

``croissant`` verifies the version's manifest through the trust store (the pinned key, the
hash chain; without ``@N`` the newest version not deprecated, as ``show`` does) and builds from
it the Croissant JSON-LD the registry serves at
``/v1/datasets/{ns}/{name}/versions/{version}/croissant``, so the document describes exactly
what the publisher signed. ``export`` reads a version, verified (streamed over a grant, or from
a pulled copy with ``--from-dir``), into one Parquet or Arrow IPC file per shard in manifest
order, plus ``export.json`` (``client/export.py``).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from ostraca.client.local import open_pulled
from ostraca.client.stream import open_dataset, parse_ref
from ostraca.protocol_spec import MalformedError, split_dataset
from ostraca.protocol_spec.croissant import croissant, croissant_json

from .common import (
    JsonOpt,
    client,
    config,
    console,
    count,
    err_console,
    print_json,
    resolve_trusted,
    size,
)

if TYPE_CHECKING:
    from ostraca.client.export import ExportedFile
    from ostraca.client.local import PulledDataset
    from ostraca.client.stream import VerifiedDataset

app = typer.Typer()


class Format(StrEnum):
    parquet = "parquet"
    arrow = "arrow"


@app.command("croissant")
def croissant_command(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="ns/name or ns/name@version")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file [default: stdout]")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="With --output: report what was written as JSON (on stdout)."),
    ] = False,
) -> None:
    """Croissant JSON-LD metadata of a dataset version, from its verified manifest: shards with
    their sha256, the record set of its Arrow columns, licence, terms, citation, publisher.
    Without --output the document itself is the JSON on stdout."""
    dataset, version = parse_ref(ref)
    registry = client(ctx)
    verified = resolve_trusted(registry, dataset, version)[1].manifest
    owner = registry.get_principal(registry.get_namespace(split_dataset(dataset)[0]).owner)
    base = registry.base_url.rstrip("/")
    body = croissant_json(
        croissant(
            verified.statement,
            digest=verified.digest,
            card_url=f"{base}/datasets/{dataset}",
            registry_url=base,
            publisher_name=owner.name,
        )
    )
    if output is None:
        sys.stdout.buffer.write(body + b"\n")
        return
    output.write_bytes(body + b"\n")
    if as_json:
        written = {"output": str(output), "dataset": dataset, "version": verified.statement.version}
        print_json({**written, "manifest_digest": verified.digest, "bytes": len(body) + 1})
        return
    err_console.print(
        f"wrote {output}: Croissant of {dataset}@{verified.statement.version} "
        f"(manifest {verified.digest[:16]}…, signature checked)",
        highlight=False,
    )


def _open(
    ctx: typer.Context, ref: str, columns: list[str] | None, from_dir: Path | None
) -> VerifiedDataset | PulledDataset:
    """``ref`` verified: streamed over the caller's grant, or the pulled copy in ``from_dir``
    (which must hold that dataset, and that version when ``ref`` names one)."""
    dataset, version = parse_ref(ref)
    settings = config(ctx)
    if from_dir is None:
        return open_dataset(dataset, version=version, columns=columns, config=settings)
    copy = open_pulled(from_dir, home=settings.home, columns=columns)
    held = copy.provenance
    if held.dataset != dataset or version not in (None, held.version):
        raise MalformedError(
            f"{from_dir} holds {held.dataset}@{held.version}, not {ref}",
            hint=f"ostraca export {held.dataset}@{held.version} … --from-dir {from_dir}",
        )
    return copy


@app.command("export")
def export_command(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="ns/name or ns/name@version")],
    directory: Annotated[Path, typer.Argument(help="A new or empty directory to write into")],
    file_format: Annotated[
        Format, typer.Option("--format", help="parquet (zstd) or arrow (IPC file format).")
    ] = Format.parquet,
    columns: Annotated[str | None, typer.Option(help="Comma-separated columns.")] = None,
    from_dir: Annotated[
        Path | None,
        typer.Option("--from-dir", help="Read a copy written by `ostraca pull` (offline)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a dataset version as Parquet or Arrow IPC files, verified on the way: one
    part-NNNNN file per shard in manifest order, and export.json (provenance, each file's
    sha256). polars and pyarrow read both formats directly, DuckDB the Parquet."""
    cols = [c.strip() for c in (columns or "").split(",") if c.strip()] or None
    with _open(ctx, ref, cols, from_dir) as ds:
        prov = ds.provenance
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            disable=quiet or as_json,
        )
        task = progress.add_task(f"{prov.dataset}@{prov.version}", total=len(ds.shard_rows))

        def on_file(_written: ExportedFile) -> None:
            progress.advance(task)

        with progress:
            result = ds.export(directory, format=file_format.value, on_file=on_file)
    if as_json:
        print_json(result.to_json_obj())
        return
    console.print(
        f"exported {prov.dataset}@{prov.version}: "
        f"{count(len(result.files), file_format.value + ' file')}, "
        f"{count(result.rows, 'row')}, {size(result.bytes)} → "
        f"{result.directory}\nmanifest {prov.manifest_digest}\ngrant    {prov.grant_id}",
        highlight=False,
    )
