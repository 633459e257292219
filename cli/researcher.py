"""Researcher commands: ``datasets``, ``show``, ``request``, ``requests``, ``grants``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ostraca.client.cards import card_json, fetch_card, readme_summary
from ostraca.client.stream import parse_ref
from ostraca.protocol_spec import DatasetManifest, OstracaError, split_dataset

from .common import (
    JsonOpt,
    client,
    console,
    count,
    err_console,
    print_json,
    resolve_trusted,
    short,
    size,
    table,
    when,
)

app = typer.Typer()


class TermsNotAcceptedError(OstracaError):
    code = "terms_not_accepted"
    title = "Terms not accepted"


@app.command()
def datasets(
    ctx: typer.Context,
    search: Annotated[str | None, typer.Option(help="Match name or description.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List datasets on the registry (metadata is public)."""
    page = client(ctx).list_datasets(search=search, limit=limit)
    if as_json:
        print_json(page.model_dump(mode="json"))
        return
    if not page.items:
        console.print("no datasets")
        return
    shown = table("dataset", "version", "rows", "size", "licence", "description")
    for d in page.items:
        shown.add_row(
            d.dataset,
            str(d.latest_version),
            f"{d.total_rows:,}",
            size(d.total_bytes),
            d.license,
            d.description,
        )
    console.print(shown)
    if page.total > len(page.items):
        console.print(f"({page.total - len(page.items)} more; use --search or --limit)")


@app.command()
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="namespace/name or namespace/name@version")],
    as_json: JsonOpt = False,
) -> None:
    """A dataset's licence, terms, schema, sizes and versions; checks the manifest's signature."""
    dataset, version = parse_ref(ref)
    registry = client(ctx)
    detail = registry.get_dataset(dataset)
    ns, _ = split_dataset(dataset)
    # Without @N: the newest version not deprecated (a deprecated @N is shown, with a warning).
    trust, current = resolve_trusted(registry, dataset, version)
    verified, card = current.manifest, fetch_card(registry, dataset, trust)
    m: DatasetManifest = verified.statement
    if as_json:
        out = detail.model_dump(mode="json")
        out["card"] = None if card is None else card_json(card)
        out["deprecated"] = current.deprecation_reason
        out["manifest"] = {
            "version": m.version,
            "digest": verified.digest,
            "signed_by": verified.signer.keyid,
            "license": m.license,
            "terms_sha256": m.terms_sha256,
            "columns": [c.model_dump() for c in m.columns],
            "shards": len(m.shards),
            "total_rows": m.total_rows,
            "total_bytes": m.total_bytes,
            "chunk_bytes": m.chunk_bytes,
            "created": m.created.isoformat(),
        }
        print_json(out)
        return
    gone = "" if current.deprecation is None else f" (deprecated: {current.deprecation_reason})"
    console.print(
        f"[bold]{dataset}[/] version {m.version} of {detail.latest_version}",
        end="",
        highlight=False,
    )
    console.print(gone, markup=False, highlight=False)
    about = m.description if card is None else card.statement.description
    if about:
        console.print(about, markup=False, highlight=False)
    if card is not None and card.statement.readme:
        summary = readme_summary(card.statement.readme)
        console.print(f"readme     {summary}", markup=False, highlight=False)
        console.print(f"           (all of it: `ostraca card {dataset}`)", highlight=False)
    console.print(f"licence    {m.license}", highlight=False)
    console.print(
        f"size       {count(m.total_rows, 'row')}, {count(len(m.shards), 'shard')}, "
        f"{size(m.total_bytes)}",
        highlight=False,
    )
    console.print(f"manifest   {verified.digest}", highlight=False)
    console.print(
        f"signed by  {verified.signer.keyid} (a trusted key of namespace {ns}; signature verified)",
        highlight=False,
    )
    console.print("schema", highlight=False)
    for c in m.columns:
        console.print(f"  {c.name}: {c.type}", markup=False, highlight=False)
    console.print("versions", highlight=False)
    for v in detail.versions:
        console.print(
            f"  {v.version}  {when(v.created)}  {count(v.total_rows, 'row')}  "
            f"{size(v.total_bytes)}  {v.digest[:16]}…",
            highlight=False,
        )
    console.print("terms", highlight=False)
    console.print("  " + m.terms.replace("\n", "\n  "), markup=False, highlight=False)


# ── access ───────────────────────────────────────────────────────────────────────────────────


@app.command()
def request(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="namespace/name")],
    purpose: Annotated[str, typer.Option(help="What you will use the data for.")],
    accept_terms: Annotated[
        bool, typer.Option("--accept-terms", help="Accept the dataset's terms without asking.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Ask a publisher for access. You sign your acceptance of the dataset's terms."""
    split_dataset(dataset)
    registry = client(ctx)
    detail = registry.get_dataset(dataset)
    if not accept_terms:
        if not sys.stdin.isatty():
            raise TermsNotAcceptedError(
                f"requesting {dataset} means accepting its terms, and there is no terminal to ask",
                hint=f"read them with `ostraca show {dataset}`, then add --accept-terms",
            )
        err_console.print(f"Terms of {dataset} ({detail.license}):", highlight=False)
        err_console.print(detail.terms, markup=False, highlight=False)
        if not typer.confirm("Do you accept these terms?", default=False, err=True):
            raise TermsNotAcceptedError(f"you did not accept the terms of {dataset}")
    item = registry.request_access(dataset, purpose=purpose, terms_sha256=detail.terms_sha256)
    if as_json:
        print_json(item.model_dump(mode="json"))
    else:
        console.print(
            f"request {item.request_id} filed for {dataset} ({item.status}); the publisher "
            "decides. Check with `ostraca requests`.",
            highlight=False,
        )


@app.command()
def requests(
    ctx: typer.Context,
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    status: Annotated[str | None, typer.Option(help="pending, granted or denied.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Access requests: a publisher's inbox, or your own requests."""
    items = client(ctx).list_requests(dataset=dataset, status=status)
    if as_json:
        print_json({"items": [r.model_dump(mode="json") for r in items]})
        return
    if not items:
        console.print("no requests")
        return
    shown = table("request", "dataset", "requester", "status", "filed", "purpose")
    for r in items:
        shown.add_row(
            r.request_id[:16] + "…",
            r.dataset,
            f"{r.requester.name} ({short(r.requester.keyid)})",
            r.status,
            when(r.created),
            r.purpose,
        )
    console.print(shown)
    console.print("full ids: --json", style="dim")


@app.command()
def grants(
    ctx: typer.Context,
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Grants you issued (publisher) or hold (researcher)."""
    items = client(ctx).list_grants(dataset=dataset)
    if as_json:
        print_json({"items": [g.model_dump(mode="json") for g in items]})
        return
    if not items:
        console.print("no grants")
        return
    shown = table("grant", "dataset", "grantee", "versions", "columns", "expires", "state")
    for g in items:
        vs = f"{g.min_version}..{g.max_version if g.max_version is not None else ''}"
        shown.add_row(
            g.grant_id[:16] + "…",
            g.dataset,
            short(g.grantee),
            vs,
            ",".join(g.columns) if g.columns else "all",
            when(g.expires),
            "revoked" if g.revoked else "active",
        )
    console.print(shown)
