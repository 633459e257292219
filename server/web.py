"""The registry's web pages: the catalog and dataset cards (rendered here from the database),
and the pages where researchers and publishers act, which are shells: their JavaScript signs
statements in the browser (``static/sign.js``) and calls the JSON API with the user's token.

Every page is served with a Content-Security-Policy that allows nothing but this registry
(``'self'``): no CDN, no inline script, nothing from outside.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ostraca.protocol_spec.croissant import croissant, spdx_url
from ostraca.protocol_spec.envelope import Envelope
from ostraca.protocol_spec.errors import MalformedError, NotFoundError
from ostraca.protocol_spec.models import DatasetManifest

from .cards import card_out, current_card, current_version, deprecation_item, deprecations
from .db import Dataset, Namespace, Principal, Version
from .deps import ReadSessionDep
from .grants import latest_manifest
from .principals import key_outs
from .readme import render_readme
from .repo import dataset_name, get_dataset, manifest_envelope, owner_of, versions_of

_HERE = Path(__file__).resolve().parent
TEMPLATES = _HERE / "templates"
STATIC = _HERE / "static"
PAGE_SIZE = 50
MAX_SHARD_ROWS = 200
"""Shards listed on a card (the count and the sizes cover them all)."""

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

router = APIRouter(include_in_schema=False)


def human_bytes(n: int) -> str:
    """``1536`` → ``1.5 KiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


_env.filters["bytes"] = human_bytes
_env.filters["spdx"] = spdx_url


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": CSP})


def install(app: FastAPI) -> None:
    """Serve the pages at ``/`` and their CSS and JavaScript at ``/static``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")


# --- the catalog ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CatalogQuery:
    search: str = ""
    license: str = ""
    namespace: str = ""
    page: int = 1
    per_page: int = PAGE_SIZE


def _filtered(q: CatalogQuery) -> Any:
    query = select(Dataset)
    if q.search:
        escaped = q.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped.lower()}%"
        query = query.where(
            or_(
                func.lower(Dataset.name).like(pattern, escape="\\"),
                func.lower(Dataset.description).like(pattern, escape="\\"),
            )
        )
    if q.license:
        query = query.where(Dataset.license == q.license)
    if q.namespace:
        query = query.join(Namespace, Namespace.id == Dataset.namespace_id).where(
            Namespace.name == q.namespace
        )
    return query


def catalog_page(session: Session, q: CatalogQuery) -> tuple[list[Dataset], int]:
    """One page of the datasets matching ``q`` (by name) and how many match in all."""
    query = _filtered(q)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Dataset.name).limit(q.per_page).offset((q.page - 1) * q.per_page)
    )
    return list(rows), total


def catalog_facets(session: Session) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The licences and the namespaces of all datasets, each with its dataset count."""
    licenses = session.execute(
        select(Dataset.license, func.count()).group_by(Dataset.license).order_by(Dataset.license)
    )
    namespaces = session.execute(
        select(Namespace.name, func.count(Dataset.id))
        .join(Dataset, Dataset.namespace_id == Namespace.id)
        .group_by(Namespace.name)
        .order_by(Namespace.name)
    )
    return [(a, n) for a, n in licenses], [(a, n) for a, n in namespaces]


@router.get("/", response_class=HTMLResponse)
def catalog(
    session: ReadSessionDep,
    q: Annotated[str, Query(max_length=256)] = "",
    license: Annotated[str, Query(max_length=128)] = "",
    namespace: Annotated[str, Query(max_length=64)] = "",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = PAGE_SIZE,
) -> HTMLResponse:
    query = CatalogQuery(
        search=q.strip(), license=license, namespace=namespace, page=page, per_page=per_page
    )
    rows, total = catalog_page(session, query)
    licenses, namespaces = catalog_facets(session)
    pages = max(1, -(-total // per_page))
    return _page(
        "catalog.html",
        title="Datasets",
        query=query,
        datasets=rows,
        total=total,
        pages=pages,
        licenses=licenses,
        namespaces=namespaces,
    )


# --- the dataset card -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionRow:
    version: Version
    signers: list[str]
    key_status: str
    deprecated: str | None
    """The reason of the version's deprecation, if it is deprecated."""


def _version_rows(session: Session, ds: Dataset, statuses: Mapping[str, str]) -> list[VersionRow]:
    gone = {r.version: deprecation_item(ds, r).reason for r in deprecations(session, ds)}
    rows = []
    for v in versions_of(session, ds):
        stored = manifest_envelope(session, ds, v.version)
        assert stored is not None
        signers = [s.keyid for s in Envelope.from_json(stored).signatures]
        status = next((statuses[k] for k in signers if k in statuses), "unknown key")
        rows.append(
            VersionRow(
                version=v, signers=signers, key_status=status, deprecated=gone.get(v.version)
            )
        )
    return rows


def _embedded_json(obj: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>`` can close it early)."""
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _card_context(request: Request, session: Session, ds: Dataset) -> dict[str, Any]:
    owner = session.get(Principal, owner_of(session, ds))
    assert owner is not None
    statuses = {k.keyid: k.status for k in key_outs(session, owner.id)}
    versions = _version_rows(session, ds, statuses)
    manifest: DatasetManifest = latest_manifest(session, ds)
    base = str(request.base_url).rstrip("/")
    jsonld = croissant(
        manifest,
        digest=versions[-1].version.digest,
        card_url=f"{base}/datasets/{ds.name}",
        registry_url=base,
        publisher_name=owner.name,
    )
    sizes = [s.bytes for s in manifest.shards]
    card_row = current_card(session, ds)
    card = None if card_row is None else card_out(ds, card_row)
    return {
        "title": ds.name,
        "script": "card.js",
        "ds": ds,
        "card": card,
        "readme": None if card is None or not card.readme else render_readme(card.readme),
        "current_version": current_version(session, ds),
        "owner": owner,
        "registry": base,
        "versions": list(reversed(versions)),
        "manifest": manifest,
        "shards": manifest.shards[:MAX_SHARD_ROWS],
        "shard_sizes": (min(sizes), max(sizes)),
        "jsonld": _embedded_json(jsonld),
    }


@router.get("/datasets/{ns}/{name}", response_class=HTMLResponse)
def card(ns: str, name: str, request: Request, session: ReadSessionDep) -> HTMLResponse:
    try:
        ds = get_dataset(session, dataset_name(ns, name))
    except (NotFoundError, MalformedError) as exc:
        return _page("missing.html", status=404, title="No such dataset", message=exc.message)
    return _page("card.html", **_card_context(request, session, ds))


# --- the pages that act for a signed-in user (their JavaScript does the work) ------------------


@router.get("/signin", response_class=HTMLResponse)
def signin() -> HTMLResponse:
    return _page("signin.html", title="Sign in", script="signin.js")


@router.get("/account", response_class=HTMLResponse)
def account() -> HTMLResponse:
    return _page("account.html", title="My requests and grants", script="account.js")


@router.get("/publisher", response_class=HTMLResponse)
def publisher() -> HTMLResponse:
    return _page("publisher.html", title="Publisher", script="publisher.js")
