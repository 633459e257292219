"""Publisher commands: ``namespace create|show``, ``publish``, ``approve``, ``deny``,
``revoke``, ``audit``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from typer._click.exceptions import UsageError

from ostraca.client.api import RegistryClient
from ostraca.client.config import parse_size
from ostraca.client.publishing import publish as publish_dataset
from ostraca.client.rekey import rekey as rekey_dataset
from ostraca.client.shards import DEFAULT_CHUNK_BYTES
from ostraca.client.verified import check_grantable
from ostraca.protocol_spec import MalformedError, NotFoundError, utc_now

from .common import (
    JsonOpt,
    UserInterruptError,
    client,
    console,
    count,
    print_json,
    short,
    size,
    table,
    when,
)

app = typer.Typer()
namespace_app = typer.Typer(help="Namespaces: an institution publishes datasets under its own.")
app.add_typer(namespace_app, name="namespace", no_args_is_help=True)


@namespace_app.command("create")
def namespace_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits and '-'.")],
    as_json: JsonOpt = False,
) -> None:
    """Claim a namespace for your institution's datasets."""
    ns = client(ctx).create_namespace(name)
    if as_json:
        print_json({"name": ns.name, "owner": ns.owner})
    else:
        console.print(f"namespace {ns.name} created (owner {short(ns.owner)})")


@namespace_app.command("show")
def namespace_show(ctx: typer.Context, name: str, as_json: JsonOpt = False) -> None:
    """A namespace's owner and the keys trusted to sign its manifests and grants."""
    ns = client(ctx).get_namespace(name)
    if as_json:
        print_json(ns.model_dump(mode="json"))
    else:
        console.print(f"namespace {ns.name}\nowner     {ns.owner}")
        for k in ns.keys:
            extra = "" if k.status == "active" else f" (rotated {when(k.rotated)})"
            console.print(f"key       {k.keyid}{extra}", highlight=False)


class CompressionOpt(StrEnum):
    zstd = "zstd"
    lz4 = "lz4"
    none = "none"


class ChunkDigestOpt(StrEnum):
    blake3 = "blake3"
    sha256 = "sha256"


def _column_groups(specs: list[str]) -> dict[str, list[str]]:
    """``["pii=ssn,dob"]`` → ``{"pii": ["ssn", "dob"]}``."""
    groups: dict[str, list[str]] = {}
    for spec in specs:
        name, eq, cols = spec.partition("=")
        columns = [c.strip() for c in cols.split(",") if c.strip()]
        if not eq or not name.strip() or not columns or name.strip() in groups:
            raise MalformedError(f"--column-group {spec!r}: expected NAME=col,col (names unique)")
        groups[name.strip()] = columns
    return groups


PathsArg = Annotated[
    list[Path],
    typer.Argument(help="Parquet, CSV, JSONL or Arrow IPC files, or directories of them."),
]
TermsOpt = Annotated[
    str | None,
    typer.Option("--terms", help="Data-use terms users must accept. \\[required, or --terms-file]"),
]
TermsFileOpt = Annotated[
    Path | None, typer.Option("--terms-file", help="Read the terms from this file. \\[or --terms]")
]
ShardSizeOpt = Annotated[
    str, typer.Option(help="Target shard size, e.g. 64MiB (MiB = 1024², MB = 1000²).")
]
ChunkSizeOpt = Annotated[
    str, typer.Option(help="Verification chunk size: a power of two, at most the shard size.")
]
ColumnGroupOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--column-group",
        help="NAME=col,col: store these columns apart, so grants can leave them out "
        "(repeatable; the other columns form the group 'default').",
    ),
]
NoEncryptOpt = Annotated[
    bool,
    typer.Option(
        "--no-encrypt",
        help="Publish plaintext shards (public data). By default every shard is encrypted "
        "and only grantees you approve can read it.",
    ),
]


@app.command()
def publish(
    ctx: typer.Context,
    paths: PathsArg,
    dataset: Annotated[str, typer.Option("--dataset", help="namespace/name")],
    license: Annotated[str, typer.Option("--license", help="SPDX licence id, e.g. CC-BY-4.0.")],
    terms: TermsOpt = None,
    terms_file: TermsFileOpt = None,
    description: Annotated[str, typer.Option(help="One paragraph about the data.")] = "",
    shard_size: ShardSizeOpt = "64MiB",
    chunk_size: ChunkSizeOpt = f"{DEFAULT_CHUNK_BYTES // 1024**2}MiB",
    compression: Annotated[
        CompressionOpt, typer.Option(help="Arrow IPC buffer compression.")
    ] = CompressionOpt.zstd,
    column_group: ColumnGroupOpt = None,
    no_encrypt: NoEncryptOpt = False,
    chunk_digest: Annotated[
        ChunkDigestOpt,
        typer.Option(
            help="Digest of each chunk in the chunk lists: sha256 for readers that cannot "
            "verify blake3 (older clients)."
        ),
    ] = ChunkDigestOpt.blake3,
    as_json: JsonOpt = False,
) -> None:
    """Publish files as the next version of a dataset: shard, encrypt, sign, upload what is
    missing.

    An interrupted publish resumes when run again with the same inputs.
    """
    shard_bytes, chunk_bytes = _sizes(shard_size, chunk_size)
    terms = _terms(terms, terms_file)
    registry = client(ctx)
    try:
        result = publish_dataset(
            registry,
            [str(p) for p in paths],
            dataset=dataset,
            license=license,
            terms=terms,
            description=description,
            shard_bytes=shard_bytes,
            chunk_bytes=chunk_bytes,
            compression=compression.value,
            progress=not as_json,
            column_groups=_column_groups(column_group or []),
            encrypt=not no_encrypt,
            chunk_digest="sha256" if chunk_digest is ChunkDigestOpt.sha256 else "blake3",
        )
    except KeyboardInterrupt:
        raise UserInterruptError(
            f"publish of {dataset} interrupted: the shards written and the blobs uploaded so "
            "far are kept; run the same command again to resume (it finishes the upload, or "
            "says that the version is already published)"
        ) from None
    if as_json:
        print_json(result.to_json())
        return
    if result.already_published:
        console.print(
            f"{result.dataset} version {result.version} already holds these inputs; nothing to "
            f"do (to change the description or README without a new version: `ostraca card "
            f"{result.dataset} --description TEXT --readme FILE`)",
            markup=False,
            highlight=False,
        )
        return
    console.print(
        f"published {result.dataset} version {result.version}: {count(result.total_rows, 'row')} "
        f"in {count(len(result.shards), 'shard')} ({size(result.total_bytes)})\n"
        f"manifest {result.digest}\n"
        f"uploaded {count(result.blobs_uploaded, 'blob')} ({size(result.bytes_uploaded)}), "
        f"{result.blobs_skipped} already on the registry",
        highlight=False,
    )


def _terms(text: str | None, path: Path | None) -> str:
    """The terms from ``--terms`` or ``--terms-file``: exactly one of them (else a usage error)."""
    if (text is None) == (path is None):
        missing = "missing" if text is None else "too many"
        raise UsageError(f"{missing} terms: give exactly one of --terms TEXT or --terms-file FILE")
    if path is None:
        assert text is not None
        return text
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NotFoundError(f"cannot read terms file {path}: {exc.strerror}") from exc


def _sizes(shard_size: str, chunk_size: str) -> tuple[int, int]:
    """``--shard-size`` and ``--chunk-size`` in bytes; a shard smaller than one chunk is a usage
    error that names the chunk size that would do."""
    shard_bytes, chunk_bytes = parse_size(shard_size), parse_size(chunk_size)
    if 0 < shard_bytes < chunk_bytes:
        fits = size(1 << (shard_bytes.bit_length() - 1)).replace(".0 ", "").replace(" ", "")
        raise typer.BadParameter(
            f"{shard_size} is smaller than the chunk size ({size(chunk_bytes)}); give a larger "
            f"--shard-size, or a smaller --chunk-size too (e.g. --chunk-size {fits})",
            param_hint="'--shard-size'",
        )
    return shard_bytes, chunk_bytes


_DURATION_RE = re.compile(r"^(\d+)\s*([hdwy])$")
_DURATION_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_expiry(text: str, *, now: datetime) -> datetime:
    """``90d``, ``12h``, ``4w``, ``1y`` from ``now``, or an absolute ``YYYY-MM-DD[THH:MM:SSZ]``."""
    m = _DURATION_RE.match(text.strip().lower())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        delta = timedelta(days=365 * n) if unit == "y" else _DURATION_UNITS[unit] * n
        if n < 1:
            raise MalformedError("--expires must be in the future")
        return now + delta
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedError(
            f"bad --expires {text!r}: use a duration (90d, 12h, 4w, 1y) or a date (2027-01-31)"
        ) from exc
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if when <= now:
        raise MalformedError(f"--expires {text} is in the past")
    return when.replace(microsecond=0)


def parse_versions(text: str) -> tuple[int, int | None]:
    """``3`` → (3, 3); ``1..3`` → (1, 3); ``2..`` → (2, None); ``..4`` → (1, 4)."""
    m = re.match(r"^\s*(\d*)\s*(\.\.)?\s*(\d*)\s*$", text)
    if not m or (not m.group(2) and not m.group(1)):
        raise MalformedError(f"bad --versions {text!r}: use N, A..B, A.. or ..B")
    low = int(m.group(1)) if m.group(1) else 1
    high: int | None = (int(m.group(3)) if m.group(3) else None) if m.group(2) else low
    if low < 1 or (high is not None and high < low):
        raise MalformedError(f"bad --versions {text!r}: versions start at 1 and must not shrink")
    return low, high


def _resolve_id(given: str, known: Sequence[str], what: str, *, listing: str) -> str:
    """A full id from a unique prefix of one (the tables show ids shortened, as git does);
    ``listing``: the command that lists them, for the hint."""
    given = given.strip().rstrip("…").lower()
    if re.fullmatch(r"[0-9a-f]{64}", given):
        return given
    hint = f"`{listing}` lists them; --json shows the full ids"
    if not re.fullmatch(r"[0-9a-f]{4,63}", given):
        raise MalformedError(
            f"{what} id must be hex (at least 4 characters of it), got {given!r}", hint=hint
        )
    matches = sorted({k for k in known if k.startswith(given)})
    if not matches:
        raise NotFoundError(f"no {what} of yours has an id starting with {given}", hint=hint)
    if len(matches) > 1:
        raise MalformedError(
            f"{given} is ambiguous: {len(matches)} {what}s start with it",
            hint="give more of the id",
        )
    return matches[0]


def _pending_request_id(registry: RegistryClient, given: str) -> str:
    pending = [r.request_id for r in registry.list_requests(status="pending")]
    return _resolve_id(
        given, pending, "pending request", listing="ostraca requests --status pending"
    )


@app.command()
def approve(
    ctx: typer.Context,
    request_id: Annotated[str, typer.Argument(help="Request id or a unique prefix of it.")],
    expires: Annotated[str, typer.Option(help="Lifetime (90d, 12h) or date.")] = "90d",
    versions: Annotated[
        str | None, typer.Option(help="Versions covered: N, A..B, A.. [default: all].")
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            help="Only these columns, comma-separated [default: all]; on a dataset with column "
            "groups, whole groups (the registry enforces those)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Grant a pending request: signs an AccessGrant here with your key, then files it."""
    now = utc_now()
    low, high = parse_versions(versions) if versions else (1, None)
    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    if columns is not None and not cols:
        raise MalformedError("--columns names no column")
    expires_at = parse_expiry(expires, now=now)
    registry = client(ctx)
    request_id = _pending_request_id(registry, request_id)
    dataset = registry.get_request(request_id).dataset
    check_grantable(registry, dataset, min_version=low, max_version=high)  # refuse up front
    grant = registry.approve(
        request_id,
        expires=expires_at,
        not_before=now,
        min_version=low,
        max_version=high,
        columns=cols,
    )
    if as_json:
        print_json(grant.model_dump(mode="json"))
    else:
        console.print(
            f"grant {grant.grant_id} for {grant.dataset} to {short(grant.grantee)}, "
            f"valid until {when(grant.expires)}",
            highlight=False,
        )


@app.command()
def deny(
    ctx: typer.Context,
    request_id: Annotated[str, typer.Argument(help="The request's id, or a unique prefix.")],
    reason: Annotated[str, typer.Option(help="Told to the requester.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Deny a pending request."""
    registry = client(ctx)
    request_id = _pending_request_id(registry, request_id)
    item = registry.deny_request(request_id, reason)
    if as_json:
        print_json(item.model_dump(mode="json"))
    else:
        console.print(f"request {item.request_id} denied", highlight=False)


@app.command()
def revoke(
    ctx: typer.Context,
    grant_id: Annotated[str, typer.Argument(help="Grant id or a unique prefix of it.")],
    reason: Annotated[str, typer.Option(help="Recorded in the signed revocation.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Revoke a grant: signs a Revocation; the registry refuses the very next byte."""
    registry = client(ctx)
    issued = [g.grant_id for g in registry.list_grants()]
    grant_id = _resolve_id(grant_id, issued, "grant", listing="ostraca grants")
    item = registry.revoke(grant_id, reason=reason)
    if as_json:
        print_json(item.model_dump(mode="json"))
    else:
        console.print(f"grant {item.grant_id} revoked at {when(item.revoked_at)}", highlight=False)


@app.command()
def audit(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="namespace/name")],
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The registry's log of every decision about a dataset (publisher only)."""
    events = client(ctx).audit(dataset, limit=limit)
    if as_json:
        print_json({"items": [e.model_dump(mode="json") for e in events]})
        return
    if not events:
        console.print("no events")
        return
    shown = table("time", "action", "principal", "version", "grant", "detail")
    for e in events:
        shown.add_row(
            when(e.time),
            e.action,
            short(e.principal),
            "-" if e.version is None else str(e.version),
            short(e.grant_id),
            "" if e.detail is None else str(e.detail),
        )
    console.print(shown)


# ── configuration ────────────────────────────────────────────────────────────────────────────


@app.command()
def rekey(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="namespace/name")],
    as_json: JsonOpt = False,
) -> None:
    """Re-encrypt a dataset's latest rows under fresh data keys, as its next version (after a
    revocation, for forward secrecy); grants still in force get the new keys."""
    result = rekey_dataset(client(ctx), dataset, progress=not as_json)
    if as_json:
        print_json(result.to_json())
        return
    console.print(
        f"re-encrypted {result.dataset} as version {result.version} under fresh data keys "
        f"({count(len(result.shards), 'shard')}, {size(result.total_bytes)}); "
        f"manifest {result.digest}",
        highlight=False,
    )
