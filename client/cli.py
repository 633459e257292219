"""The ``ostraca`` command line. Each failure prints one line — the error's code, what went
wrong, what to do next — and exits 1. Commands that return data take ``--json`` for scripts."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from ostraca.protocol_spec import (
    DatasetManifest,
    MalformedError,
    NotFoundError,
    OstracaError,
    PublicKey,
    SigningKey,
    split_dataset,
    utc_now,
    verify_manifest,
)
from ostraca.server.cli import server_app
from ostraca.trainer.cli import register_trainer_commands

from .api import GrantItem, Principal, RegistryClient, RequestItem
from .cli_stream import register_stream_commands
from .config import (
    CONFIG_KEYS,
    ClientConfig,
    load_config,
    ostraca_home,
    parse_size,
    set_config_value,
)
from .keystore import load_signing_key, public_path, save_signing_key
from .publish import publish as publish_dataset
from .shards import DEFAULT_CHUNK_BYTES
from .stream import parse_ref

__all__ = ["app", "main", "ostraca_home", "run"]

app = typer.Typer(
    name="ostraca",
    help="Share licensed training data: signed manifests, signed grants, verified streaming.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
namespace_app = typer.Typer(help="Namespaces: an institution publishes datasets under its own.")
config_app = typer.Typer(help="Show or change this client's settings ($OSTRACA_HOME/config.json).")
app.add_typer(namespace_app, name="namespace", no_args_is_help=True)
app.add_typer(config_app, name="config", no_args_is_help=True)
app.add_typer(server_app, name="server", no_args_is_help=True)

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]


class TermsNotAcceptedError(OstracaError):
    code = "terms_not_accepted"
    title = "Terms not accepted"


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"ostraca {dist_version('ostraca')}")
        raise typer.Exit


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show version."),
    ] = False,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry", help="Registry URL (else env OSTRACA_REGISTRY, else config.json)."
        ),
    ] = None,
    identity: Annotated[
        Path | None,
        typer.Option(
            "--identity",
            help="Private key file [env OSTRACA_IDENTITY; $OSTRACA_HOME/identity.pem].",
        ),
    ] = None,
    passphrase_env: Annotated[
        str | None,
        typer.Option("--passphrase-env", help="Environment variable holding the key passphrase."),
    ] = None,
) -> None:
    """Share licensed training data: signed manifests, signed grants, verified streaming."""
    # Exported so that every command, sub-apps included, sees them through load_config();
    # run() restores the environment afterwards.
    for var, value in (
        ("OSTRACA_REGISTRY", registry),
        ("OSTRACA_IDENTITY", str(identity) if identity is not None else None),
        ("OSTRACA_PASSPHRASE_ENV", passphrase_env),
    ):
        if value is not None:
            os.environ[var] = value


def _config(ctx: typer.Context) -> ClientConfig:
    return load_config()


def _client(ctx: typer.Context) -> RegistryClient:
    client = RegistryClient(_config(ctx))
    ctx.call_on_close(client.close)
    return client


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _short(keyid: str | None) -> str:
    return "-" if not keyid else keyid[:16] + "…"


# ── identity ─────────────────────────────────────────────────────────────────────────────────


class Kind(StrEnum):
    institution = "institution"
    researcher = "researcher"


@app.command()
def keygen(
    out: Annotated[
        Path | None, typer.Option(help="Private key file [default: $OSTRACA_HOME/identity.pem]")
    ] = None,
    name: Annotated[str, typer.Option(help="Display name registered with the key.")] = "",
    kind: Annotated[Kind, typer.Option(help="Who this identity is.")] = Kind.researcher,
    affiliation: Annotated[str, typer.Option(help="Institution or group.")] = "",
    passphrase_env: Annotated[
        str | None,
        typer.Option(help="Encrypt the key with the passphrase in this environment variable."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing key file.")] = False,
) -> None:
    """Create an Ed25519 identity (PKCS#8 PEM, mode 0600). The private key never leaves here."""
    path = out or ostraca_home() / "identity.pem"
    passphrase = None
    if passphrase_env is not None:
        passphrase = os.environ.get(passphrase_env)
        if not passphrase:
            raise OstracaError(f"environment variable {passphrase_env} is empty or unset")
    key = SigningKey.generate()
    profile = {"name": name or path.stem, "kind": kind.value, "affiliation": affiliation}
    save_signing_key(key, path, passphrase=passphrase, profile=profile, overwrite=force)
    console.print(f"key id  {key.keyid}\nprivate {path}\npublic  {public_path(path)}")


def _profile(config: ClientConfig) -> dict[str, str]:
    try:
        data = json.loads(public_path(config.identity_path).read_text())
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in data.items() if k in ("name", "kind", "affiliation")}


def _principal_json(p: Principal) -> dict[str, Any]:
    return p.model_dump(mode="json")


def _print_principal(p: Principal) -> None:
    console.print(f"{p.name} ({p.kind}{', ' + p.affiliation if p.affiliation else ''})")
    console.print(f"key id  {p.keyid}")


@app.command()
def register(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="Display name [default: from keygen].")] = None,
    kind: Annotated[Kind | None, typer.Option(help="institution or researcher.")] = None,
    affiliation: Annotated[str | None, typer.Option(help="Institution or group.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register this identity's public key with the registry (signed: proves you hold the key)."""
    client = _client(ctx)
    profile = _profile(client.config)
    principal = client.register(
        name or profile.get("name") or client.config.identity_path.stem,
        (kind.value if kind else None) or profile.get("kind") or Kind.researcher.value,
        affiliation if affiliation is not None else profile.get("affiliation", ""),
    )
    if as_json:
        _print_json(_principal_json(principal))
    else:
        console.print("registered")
        _print_principal(principal)


@app.command()
def login(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Log in: sign the registry's challenge and cache a short-lived token."""
    token = _client(ctx).login()
    if as_json:
        _print_json(
            {"expires": token.expires.isoformat(), "principal": _principal_json(token.principal)}
        )
    else:
        console.print(
            f"logged in as {token.principal.name}; token valid until {_when(token.expires)}"
        )


@app.command()
def logout(ctx: typer.Context) -> None:
    """Revoke the cached token on the registry and forget it."""
    _client(ctx).logout()
    console.print("logged out")


@app.command()
def whoami(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Who the registry thinks you are."""
    principal = _client(ctx).whoami()
    if as_json:
        _print_json(_principal_json(principal))
    else:
        _print_principal(principal)


def _rotated_name(path: Path, when: datetime) -> Path:
    """``identity.pem.rotated-2026-11-27`` (then ``…-2``, ``…-3``: never an existing file)."""
    base = path.with_name(f"{path.name}.rotated-{when:%Y-%m-%d}")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (never replacing a file) and write ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


@app.command("rotate-key")
def rotate_key(
    ctx: typer.Context,
    new_key: Annotated[
        Path | None,
        typer.Option(
            "--new-key",
            help="Rotate to the private key in this file [default: generate a new key].",
        ),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why (recorded in the signed rotation).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Replace this identity's key: sign a KeyRotation with the old and the new key, submit it,
    then move the identity file to the new key. The old key file is kept beside it as
    <identity>.rotated-<date> (mode 0600): it still verifies what it signed before, but the
    registry refuses it for anything new. Every token of the old key is revoked; this logs in
    again with the new key."""
    client = _client(ctx)
    config = client.config
    path = config.identity_path
    old = client.key  # loads (and checks) the current identity file first
    passphrase = config.passphrase
    new = (
        SigningKey.generate()
        if new_key is None
        else load_signing_key(new_key.expanduser(), passphrase=passphrase)
    )
    if new.keyid == old.keyid:
        raise MalformedError("the new key is the current key")
    # The new key is on disk before the registry hears of it: whatever fails afterwards, the
    # key the registry now trusts is never lost.
    staged = path.with_name(f".{path.name}.rotating-{new.keyid[:16]}")
    staged.unlink(missing_ok=True)
    _write_private(staged, new.to_pem(passphrase.encode() if passphrase else None))
    try:
        rotation = client.rotate_key(new, reason=reason)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    backup = _rotated_name(path, utc_now())
    _write_private(backup, path.read_bytes())
    os.replace(staged, path)
    pub = public_path(path)
    try:
        info = json.loads(pub.read_text())
    except (OSError, ValueError):
        info = {}
    if pub.exists():
        pub.replace(backup.with_name(backup.name + ".pub.json"))
    info.update(PublicKey.from_verify_key(new.public).model_dump())
    pub.write_text(json.dumps(info, indent=2) + "\n")
    token = client.login()
    out = {
        "old_key": old.keyid,
        "new_key": new.keyid,
        "rotation_id": rotation.rotation_id,
        "identity": str(path),
        "old_identity": str(backup),
        "principal": token.principal.keyid,
    }
    if as_json:
        _print_json(out)
        return
    console.print(f"key rotated  {_short(old.keyid)} → {new.keyid}", highlight=False)
    console.print(f"identity     {path} (the new key)", highlight=False)
    console.print(
        f"old key      {backup} (kept, mode 0600: it verifies what it signed before and can "
        "sign nothing new)",
        highlight=False,
    )
    console.print(f"logged in again as {token.principal.name}", highlight=False)


# ── namespaces and datasets ──────────────────────────────────────────────────────────────────


@namespace_app.command("create")
def namespace_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits and '-'.")],
    as_json: JsonOpt = False,
) -> None:
    """Claim a namespace for your institution's datasets."""
    ns = _client(ctx).create_namespace(name)
    if as_json:
        _print_json({"name": ns.name, "owner": ns.owner})
    else:
        console.print(f"namespace {ns.name} created (owner {_short(ns.owner)})")


@namespace_app.command("show")
def namespace_show(ctx: typer.Context, name: str, as_json: JsonOpt = False) -> None:
    """A namespace's owner and the keys trusted to sign its manifests and grants."""
    ns = _client(ctx).get_namespace(name)
    if as_json:
        _print_json(ns.model_dump(mode="json"))
    else:
        console.print(f"namespace {ns.name}\nowner     {ns.owner}")
        for k in ns.keys:
            extra = "" if k.status == "active" else f" (rotated {_when(k.rotated)})"
            console.print(f"key       {k.keyid}{extra}", highlight=False)


class CompressionOpt(StrEnum):
    zstd = "zstd"
    lz4 = "lz4"
    none = "none"


@app.command()
def publish(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(help="Parquet, CSV, JSONL or Arrow IPC files, or directories of them."),
    ],
    dataset: Annotated[str, typer.Option("--dataset", help="namespace/name")],
    license: Annotated[str, typer.Option("--license", help="SPDX licence id, e.g. CC-BY-4.0.")],
    terms: Annotated[
        str | None, typer.Option("--terms", help="Data-use terms users must accept.")
    ] = None,
    terms_file: Annotated[
        Path | None, typer.Option("--terms-file", help="Read the terms from this file.")
    ] = None,
    description: Annotated[str, typer.Option(help="One paragraph about the data.")] = "",
    shard_size: Annotated[str, typer.Option(help="Target shard size, e.g. 64MiB.")] = "64MiB",
    chunk_size: Annotated[
        str, typer.Option(help="Verification chunk size (a power of two).")
    ] = f"{DEFAULT_CHUNK_BYTES // 1024**2}MiB",
    compression: Annotated[
        CompressionOpt, typer.Option(help="Arrow IPC buffer compression.")
    ] = CompressionOpt.zstd,
    as_json: JsonOpt = False,
) -> None:
    """Publish files as the next version of a dataset: shard, sign, upload what is missing.

    An interrupted publish resumes when run again with the same inputs.
    """
    if (terms is None) == (terms_file is None):
        raise MalformedError("give exactly one of --terms TEXT or --terms-file FILE")
    if terms_file is not None:
        try:
            terms = terms_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise NotFoundError(f"cannot read terms file {terms_file}: {exc.strerror}") from exc
    assert terms is not None
    client = _client(ctx)
    result = publish_dataset(
        client,
        [str(p) for p in paths],
        dataset=dataset,
        license=license,
        terms=terms,
        description=description,
        shard_bytes=parse_size(shard_size),
        chunk_bytes=parse_size(chunk_size),
        compression=compression.value,
        progress=not as_json,
    )
    if as_json:
        _print_json(result.to_json())
        return
    if result.already_published:
        console.print(
            f"{result.dataset} version {result.version} already holds these inputs; nothing to do"
        )
        return
    console.print(
        f"published {result.dataset} version {result.version}: {result.total_rows:,} rows in "
        f"{len(result.shards)} shards ({_size(result.total_bytes)})\n"
        f"manifest {result.digest}\n"
        f"uploaded {result.blobs_uploaded} blobs ({_size(result.bytes_uploaded)}), "
        f"{result.blobs_skipped} already on the registry"
    )


@app.command()
def datasets(
    ctx: typer.Context,
    search: Annotated[str | None, typer.Option(help="Match name or description.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List datasets on the registry (metadata is public)."""
    page = _client(ctx).list_datasets(search=search, limit=limit)
    if as_json:
        _print_json(page.model_dump(mode="json"))
        return
    if not page.items:
        console.print("no datasets")
        return
    table = Table("dataset", "version", "rows", "size", "licence", "description")
    for d in page.items:
        table.add_row(
            d.dataset,
            str(d.latest_version),
            f"{d.total_rows:,}",
            _size(d.total_bytes),
            d.license,
            d.description[:60],
        )
    console.print(table)
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
    client = _client(ctx)
    detail = client.get_dataset(dataset)
    envelope = client.get_manifest_envelope(dataset, version or "latest")
    ns, _ = split_dataset(dataset)
    verified = verify_manifest(
        envelope, publisher_keys=client.namespace_keys(ns), now=utc_now(), dataset=dataset
    )
    m: DatasetManifest = verified.statement
    if as_json:
        out = detail.model_dump(mode="json")
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
        _print_json(out)
        return
    console.print(
        f"[bold]{dataset}[/] version {m.version} of {detail.latest_version}", highlight=False
    )
    if m.description:
        console.print(m.description, markup=False, highlight=False)
    console.print(f"licence    {m.license}", highlight=False)
    console.print(
        f"size       {m.total_rows:,} rows, {len(m.shards)} shards, {_size(m.total_bytes)}",
        highlight=False,
    )
    console.print(f"manifest   {verified.digest}", highlight=False)
    console.print(
        f"signed by  {verified.signer.keyid} (a key of namespace {ns}; signature verified)",
        highlight=False,
    )
    console.print("schema", highlight=False)
    for c in m.columns:
        console.print(f"  {c.name}: {c.type}", markup=False, highlight=False)
    console.print("versions", highlight=False)
    for v in detail.versions:
        console.print(
            f"  {v.version}  {_when(v.created)}  {v.total_rows:,} rows  {_size(v.total_bytes)}  "
            f"{v.digest[:16]}…",
            highlight=False,
        )
    console.print("terms", highlight=False)
    console.print("  " + m.terms.replace("\n", "\n  "), markup=False, highlight=False)


# ── access ───────────────────────────────────────────────────────────────────────────────────


def _request_json(r: RequestItem) -> dict[str, Any]:
    return r.model_dump(mode="json")


def _grant_json(g: GrantItem) -> dict[str, Any]:
    return g.model_dump(mode="json")


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
    client = _client(ctx)
    detail = client.get_dataset(dataset)
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
    item = client.request_access(dataset, purpose=purpose, terms_sha256=detail.terms_sha256)
    if as_json:
        _print_json(_request_json(item))
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
    items = _client(ctx).list_requests(dataset=dataset, status=status)
    if as_json:
        _print_json({"items": [_request_json(r) for r in items]})
        return
    if not items:
        console.print("no requests")
        return
    table = Table("request", "dataset", "requester", "status", "filed", "purpose")
    for r in items:
        table.add_row(
            r.request_id[:16] + "…",
            r.dataset,
            f"{r.requester.name} ({_short(r.requester.keyid)})",
            r.status,
            _when(r.created),
            r.purpose[:60],
        )
    console.print(table)
    console.print("full ids: --json", style="dim")


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


def _resolve_id(given: str, known: Sequence[str], what: str) -> str:
    """A full id from a unique prefix of one (the tables show ids shortened, as git does)."""
    given = given.strip().rstrip("…").lower()
    if re.fullmatch(r"[0-9a-f]{64}", given):
        return given
    if not re.fullmatch(r"[0-9a-f]{4,63}", given):
        raise MalformedError(f"{what} id must be hex (at least 4 characters of it), got {given!r}")
    matches = sorted({k for k in known if k.startswith(given)})
    if not matches:
        raise NotFoundError(f"no {what} of yours has an id starting with {given}")
    if len(matches) > 1:
        raise MalformedError(f"{given} is ambiguous: {len(matches)} {what}s start with it")
    return matches[0]


def _pending_request_id(client: RegistryClient, given: str) -> str:
    pending = [r.request_id for r in client.list_requests(status="pending")]
    return _resolve_id(given, pending, "pending request")


@app.command()
def approve(
    ctx: typer.Context,
    request_id: Annotated[str, typer.Argument(help="Request id or a unique prefix of it.")],
    expires: Annotated[str, typer.Option(help="Lifetime (90d, 12h) or date.")] = "90d",
    versions: Annotated[
        str | None, typer.Option(help="Versions covered: N, A..B, A.. [default: all].")
    ] = None,
    columns: Annotated[
        str | None, typer.Option(help="Only these columns, comma-separated [default: all].")
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
    client = _client(ctx)
    request_id = _pending_request_id(client, request_id)
    grant = client.approve(
        request_id,
        expires=expires_at,
        not_before=now,
        min_version=low,
        max_version=high,
        columns=cols,
    )
    if as_json:
        _print_json(_grant_json(grant))
    else:
        console.print(
            f"grant {grant.grant_id} for {grant.dataset} to {_short(grant.grantee)}, "
            f"valid until {_when(grant.expires)}",
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
    client = _client(ctx)
    request_id = _pending_request_id(client, request_id)
    item = client.deny_request(request_id, reason)
    if as_json:
        _print_json(_request_json(item))
    else:
        console.print(f"request {item.request_id} denied", highlight=False)


@app.command()
def grants(
    ctx: typer.Context,
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Grants you issued (publisher) or hold (researcher)."""
    items = _client(ctx).list_grants(dataset=dataset)
    if as_json:
        _print_json({"items": [_grant_json(g) for g in items]})
        return
    if not items:
        console.print("no grants")
        return
    table = Table("grant", "dataset", "grantee", "versions", "columns", "expires", "state")
    for g in items:
        vs = f"{g.min_version}..{g.max_version if g.max_version is not None else ''}"
        table.add_row(
            g.grant_id[:16] + "…",
            g.dataset,
            _short(g.grantee),
            vs,
            ",".join(g.columns) if g.columns else "all",
            _when(g.expires),
            "revoked" if g.revoked else "active",
        )
    console.print(table)


@app.command()
def revoke(
    ctx: typer.Context,
    grant_id: Annotated[str, typer.Argument(help="Grant id or a unique prefix of it.")],
    reason: Annotated[str, typer.Option(help="Recorded in the signed revocation.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Revoke a grant: signs a Revocation; the registry refuses the very next byte."""
    client = _client(ctx)
    grant_id = _resolve_id(grant_id, [g.grant_id for g in client.list_grants()], "grant")
    item = client.revoke(grant_id, reason=reason)
    if as_json:
        _print_json(item.model_dump(mode="json"))
    else:
        console.print(f"grant {item.grant_id} revoked at {_when(item.revoked_at)}", highlight=False)


@app.command()
def audit(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="namespace/name")],
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The registry's log of every decision about a dataset (publisher only)."""
    events = _client(ctx).audit(dataset, limit=limit)
    if as_json:
        _print_json({"items": [e.model_dump(mode="json") for e in events]})
        return
    if not events:
        console.print("no events")
        return
    table = Table("time", "action", "principal", "version", "grant", "detail")
    for e in events:
        table.add_row(
            _when(e.time),
            e.action,
            _short(e.principal),
            "-" if e.version is None else str(e.version),
            _short(e.grant_id),
            "" if e.detail is None else str(e.detail)[:60],
        )
    console.print(table)


# ── configuration ────────────────────────────────────────────────────────────────────────────


@config_app.command("show")
def config_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The effective settings (file, environment and flags combined)."""
    data = _config(ctx).to_dict()
    if as_json:
        _print_json(data)
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


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(code: str, message: str) -> int:
    err_console.print(
        "[bold red]error[/] " + escape(f"[{code}] {_one_line(message)}"), highlight=False
    )
    return 1


@app.command()
def demo(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Keep everything here (registry, identities, run) [default: temp]."),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Tiny corpus and few steps: well under a minute.")
    ] = False,
    steps: Annotated[int | None, typer.Option(min=1, help="Training steps.")] = None,
    keep: Annotated[bool, typer.Option(help="Keep the temp dir afterwards.")] = False,
) -> None:
    """The whole story end to end on the embedded default: publish, request, grant, train,
    attest, revoke. Needs no configuration and no network."""
    from .demo import DemoOptions, run_demo  # noqa: PLC0415 - imports torch

    run_demo(DemoOptions(data_dir=data_dir, quick=quick, steps=steps, keep=keep), console)


register_stream_commands(app)
register_trainer_commands(app)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    saved_env = dict(os.environ)
    try:
        return _run(argv)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)


def _run(argv: Sequence[str] | None) -> int:
    try:
        app(
            args=list(argv) if argv is not None else None,
            prog_name="ostraca",
            standalone_mode=False,
        )
    except OstracaError as exc:
        return _fail(exc.code, str(exc))
    except NoArgsIsHelpError as exc:
        exc.show()
        return 0
    except ClickException as exc:
        return _fail("usage", f"{exc.format_message()} (see `ostraca --help`)")
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        return 130
    except OSError as exc:
        return _fail("os_error", f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    return 0


def main() -> None:
    """Entry point: run the CLI, turning every failure into one clear line and exit status 1."""
    sys.exit(run())
