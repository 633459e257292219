"""Metadata that changes without a new data version: ``card`` and ``deprecate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ostraca.client.cards import (
    NamespaceTrust,
    card_json,
    deprecate_version,
    fetch_card,
    publish_card,
)
from ostraca.client.stream import parse_ref
from ostraca.protocol_spec import split_dataset
from ostraca.protocol_spec.errors import NotFoundError

from .common import JsonOpt, client, console, print_json, when

app = typer.Typer()


def _read_readme(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NotFoundError(f"cannot read README file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise NotFoundError(f"README file {path} is not UTF-8 text") from exc


@app.command()
def card(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="namespace/name")],
    description: Annotated[
        str | None, typer.Option(help="A new description (kept from the current card if absent).")
    ] = None,
    readme: Annotated[
        Path | None, typer.Option(help="A new README: a markdown file (kept if absent).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A dataset's card (description and README), signed; without options, print the current
    one. Changing it publishes no new data version."""
    split_dataset(dataset)
    registry = client(ctx)
    trust = NamespaceTrust.of(registry, dataset)
    if description is None and readme is None:
        verified = fetch_card(registry, dataset, trust)
        if verified is None:
            raise NotFoundError(
                f"{dataset} has no card yet",
                hint=f"its publisher adds one with `ostraca card {dataset} --readme README.md`",
            )
        c = verified.statement
        if as_json:
            print_json(card_json(verified))
            return
        console.print(
            f"card {c.sequence} of {dataset}, {when(c.created)}, signed by "
            f"{verified.signer.keyid} (a trusted key of the namespace; verified)",
            highlight=False,
        )
        console.print(c.description or "(no description)", markup=False, highlight=False)
        if c.readme:
            console.print("", c.readme, sep="\n", markup=False, highlight=False)
        return
    text = None if readme is None else _read_readme(readme)
    item = publish_card(registry, dataset, description=description, readme=text, trust=trust)
    if as_json:
        print_json(item.model_dump(mode="json", exclude={"envelope"}))
        return
    console.print(
        f"card {item.sequence} of {dataset} published (no new data version); id {item.card_id}",
        highlight=False,
    )


@app.command()
def deprecate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="namespace/name@N: the version to deprecate")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the signed deprecation.")],
    as_json: JsonOpt = False,
) -> None:
    """Deprecate a version: signed and audited; `latest` skips it, it stays readable as @N, and
    grants are unchanged (revoke them to end access)."""
    dataset, version = parse_ref(ref)
    if version is None:
        raise typer.BadParameter(f"name the version to deprecate: {dataset}@N", param_hint="REF")
    item = deprecate_version(client(ctx), dataset, version, reason=reason)
    if as_json:
        print_json(item.model_dump(mode="json", exclude={"envelope"}))
        return
    console.print(
        f"{dataset} version {item.version} deprecated: `latest` now skips it; "
        f"`{dataset}@{item.version}` still reads it",
        highlight=False,
    )
