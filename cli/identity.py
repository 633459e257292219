"""Identity commands: ``keygen``, ``register``, ``login``, ``logout``, ``whoami``,
``rotate-key``."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ostraca.client.config import ClientConfig, ostraca_home
from ostraca.client.keystore import (
    former_identities,
    load_signing_key,
    public_path,
    rotate_identity,
    save_signing_key,
)
from ostraca.protocol_spec import MalformedError, OstracaError, SigningKey
from ostraca.protocol_spec.wire import PrincipalOut

from .common import JsonOpt, client, console, print_json, short, when

if TYPE_CHECKING:
    from ostraca.client.api import RegistryClient

app = typer.Typer()


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
    as_json: JsonOpt = False,
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
    if as_json:
        print_json(
            {
                "keyid": key.keyid,
                "public": key.public.b64,
                "private_path": str(path),
                "public_path": str(public_path(path)),
                **profile,
            }
        )
    else:
        console.print(f"key id  {key.keyid}\nprivate {path}\npublic  {public_path(path)}")


def _profile(config: ClientConfig) -> dict[str, str]:
    try:
        data = json.loads(public_path(config.identity_path).read_text())
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in data.items() if k in ("name", "kind", "affiliation")}


def _principal_json(p: PrincipalOut) -> dict[str, Any]:
    return p.model_dump(mode="json")


def _print_principal(p: PrincipalOut) -> None:
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
    registry = client(ctx)
    profile = _profile(registry.config)
    principal = registry.register(
        name or profile.get("name") or registry.config.identity_path.stem,
        (kind.value if kind else None) or profile.get("kind") or Kind.researcher.value,
        affiliation if affiliation is not None else profile.get("affiliation", ""),
    )
    if as_json:
        print_json(_principal_json(principal))
    else:
        console.print("registered")
        _print_principal(principal)


@app.command()
def login(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Log in: sign the registry's challenge and cache a short-lived token."""
    token = client(ctx).login()
    if as_json:
        print_json(
            {"expires": token.expires.isoformat(), "principal": _principal_json(token.principal)}
        )
    else:
        console.print(
            f"logged in as {token.principal.name}; token valid until {when(token.expires)}"
        )


@app.command()
def logout(ctx: typer.Context) -> None:
    """Revoke the cached token on the registry and forget it."""
    client(ctx).logout()
    console.print("logged out")


@app.command()
def whoami(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Who the registry thinks you are."""
    principal = client(ctx).whoami()
    if as_json:
        print_json(_principal_json(principal))
    else:
        _print_principal(principal)


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
    encryption: Annotated[
        bool,
        typer.Option(
            "--encryption",
            help="Rotate only the encryption key (the identity's next derived one); "
            "data keys wrapped to the earlier ones stay readable.",
        ),
    ] = False,
    rewrap: Annotated[
        bool,
        typer.Option(
            "--rewrap-escrow",
            help="Only wrap the escrow the former key files beside the identity open to the "
            "current key (after a rotation whose re-wrap failed).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Replace this identity's key: sign a KeyRotation with the old and the new key, submit it,
    then move the identity file to the new key. The old key file is kept beside it as
    <identity>.rotated-<date> (mode 0600): it still verifies what it signed before, but the
    registry refuses it for anything new. Every token of the old key is revoked; this logs in
    again with the new key. A publisher's escrow of data keys is then wrapped to the new key,
    so any machine holding only the new identity approves requests for encrypted versions."""
    registry = client(ctx)
    if encryption:
        _rotate_encryption_key(registry, as_json=as_json)
        return
    if rewrap:
        _rewrap(registry, as_json=as_json)
        return
    config = registry.config
    path = config.identity_path
    old = registry.key  # loads (and checks) the current identity file first
    passphrase = config.passphrase
    new = (
        SigningKey.generate()
        if new_key is None
        else load_signing_key(new_key.expanduser(), passphrase=passphrase)
    )
    if new.keyid == old.keyid:
        raise MalformedError("the new key is the current key")
    rotation, backup = rotate_identity(
        path, new, lambda: registry.rotate_key(new, reason=reason), passphrase=passphrase
    )
    token = registry.login()
    try:  # the rotation stands: the old key file stays, so approve still opens the old escrow
        rewrapped = _rewrapped(registry)
    except OstracaError as exc:
        raise OstracaError(
            f"the key was rotated, but the escrow was not wrapped to the new key: {exc.message}",
            hint="run `ostraca rotate-key --rewrap-escrow` on this machine (it holds the old key)",
        ) from exc
    out: dict[str, Any] = {
        "old_key": old.keyid,
        "new_key": new.keyid,
        "rotation_id": rotation.rotation_id,
        "identity": str(path),
        "old_identity": str(backup),
        "principal": token.principal.keyid,
        "escrow_rewrapped": rewrapped,
    }
    if as_json:
        print_json(out)
    else:
        _print_rotation(out, token.principal.name)


def _print_rotation(out: dict[str, Any], name: str) -> None:
    console.print(f"key rotated  {short(out['old_key'])} → {out['new_key']}", highlight=False)
    console.print(f"identity     {out['identity']} (the new key)", highlight=False)
    console.print(
        f"old key      {out['old_identity']} (kept, mode 0600: it verifies what it signed "
        "before and can sign nothing new)",
        highlight=False,
    )
    console.print(f"logged in again as {name}", highlight=False)
    if out["escrow_rewrapped"]:
        done = ", ".join(out["escrow_rewrapped"])
        console.print(f"escrow       wrapped to the new key for {done}", highlight=False)


def _rewrapped(registry: RegistryClient) -> list[str]:
    from ostraca.client.keyflow import rewrap_escrow  # noqa: PLC0415 - keeps --help fast

    config = registry.config
    former = former_identities(
        config.identity_path, current=registry.keyid, passphrase=config.passphrase
    )
    return rewrap_escrow(registry, former)


def _rewrap(registry: RegistryClient, *, as_json: bool) -> None:
    done = _rewrapped(registry)
    if as_json:
        print_json({"escrow_rewrapped": done})
    else:
        console.print(f"escrow wrapped to the current key for {len(done)} dataset(s)")


def _rotate_encryption_key(registry: RegistryClient, *, as_json: bool) -> None:
    from ostraca.client.keyflow import rotate_encryption_key  # noqa: PLC0415 - keeps --help fast

    private = rotate_encryption_key(registry)
    if as_json:
        print_json({"encryption_key": private.public.keyid})
    else:
        console.print(f"encryption key {private.public.keyid} registered (the current one)")
