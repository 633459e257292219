"""Key rotation from the client's side, against a real registry: the SDK call, the CLI command
that moves the identity file, and a trust store that follows a rotation only from its pin."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ostraca.cli import run
from ostraca.client.api import RegistryClient
from ostraca.client.config import load_config
from ostraca.client.keyflow import rewrap_escrow
from ostraca.client.keystore import load_signing_key, public_path, save_signing_key
from ostraca.client.publishing import PublishResult, publish
from ostraca.client.stream import open_dataset
from ostraca.client.trust import OfferedKeys, TrustStore, resolve_manifest
from ostraca.client.verified import check_grantable
from ostraca.protocol_spec import (
    AccessGrant,
    AuthenticationError,
    Envelope,
    KeyRotation,
    MalformedError,
    PublicKey,
    SigningKey,
    UntrustedKeyError,
    sign_statement,
    utc_now,
    verify_grant,
    verify_key_rotation,
)

from ..registry_helpers import publish_as
from .client_helpers import ENV_VARS, NAMESPACE, TERMS, Identity, make_identity, sample_table

DATASET = f"{NAMESPACE}/books"


def _publish(client: RegistryClient, key: SigningKey, seed: int) -> PublishResult:
    return publish(
        client,
        sample_table(200, seed=seed),
        dataset=DATASET,
        key=key,
        license="CC-BY-4.0",
        terms=TERMS,
        description="test corpus",
        progress=False,
    )


def test_rotate_key_and_a_pinned_reader_follows(
    publisher: Identity, researcher: Identity, tmp_path: Path
) -> None:
    old = publisher.key
    v1 = _publish(publisher.client, old, 0)
    # The researcher pins the publisher's key on first use and verifies version 1.
    told: list[str] = []
    store = TrustStore(researcher.home, announce=told.append)
    now = utc_now()
    keys = store.keys_for(NAMESPACE, offered=researcher.client.namespace_keys(NAMESPACE), now=now)
    assert set(keys) == {old.keyid}
    first, _ = resolve_manifest(researcher.client, store, DATASET, keys=keys, now=now)
    assert first.digest == v1.digest

    # The publisher rotates through the SDK; the client signs with the new key from then on.
    new = SigningKey.generate()
    item = publisher.client.rotate_key(new, reason="yearly rotation")
    assert (item.old_key, item.new_key.keyid, item.reason) == (
        old.keyid,
        new.keyid,
        "yearly rotation",
    )
    verify_key_rotation(Envelope.from_dict(item.envelope), old_key=old.public, now=utc_now())
    assert publisher.client.keyid == new.keyid
    assert publisher.client.whoami().keyid == old.keyid  # a fresh login, same principal
    chain = researcher.client.rotations(publisher.keyid)
    assert [r.rotation_id for r in chain] == [item.rotation_id]
    listed = researcher.client.get_namespace(NAMESPACE).keys
    assert [(k.keyid, k.status) for k in listed] == [(new.keyid, "active"), (old.keyid, "rotated")]

    # Publishing with the rotated key is refused with a clear error; the new key continues the
    # chain.
    with pytest.raises(UntrustedKeyError, match="rotated"):
        _publish(publisher.client, old, 1)
    v2 = _publish(publisher.client, new, 1)
    assert v2.version == 2

    # The researcher's store sees a new key, fetches the chain, verifies it from the pin.
    now = utc_now()
    keys = store.keys_for(NAMESPACE, offered=researcher.client.namespace_keys(NAMESPACE), now=now)
    assert set(keys) == {new.keyid}
    assert store.pinned(NAMESPACE) == {new.keyid: new.public}
    assert set(store.retired(NAMESPACE)) == {old.keyid}
    assert "rotation verified" in told[-1]
    latest, _ = resolve_manifest(researcher.client, store, DATASET, keys=keys, now=now)
    assert (latest.statement.version, latest.signer.keyid) == (2, new.keyid)
    # Old versions still verify: with the retired key, signed before its rotation.
    old_version, _ = resolve_manifest(
        researcher.client, store, DATASET, keys=keys, now=now, version=1
    )
    assert (old_version.digest, old_version.signer.keyid) == (v1.digest, old.keyid)
    # A fresh reader (no pin yet) trusts the active key and keeps the rotated one for old
    # versions.
    fresh = TrustStore(tmp_path / "fresh-home")
    keys = fresh.keys_for(NAMESPACE, offered=researcher.client.namespace_keys(NAMESPACE), now=now)
    assert set(keys) == {new.keyid}
    assert set(fresh.retired(NAMESPACE)) == {old.keyid}
    got, _ = resolve_manifest(researcher.client, fresh, DATASET, keys=keys, now=now, version=1)
    assert got.digest == v1.digest


def _serving(*envelopes: Envelope) -> Callable[[], list[Envelope]]:
    """A registry's rotation chain, as a (lying) registry would serve it."""
    return lambda: list(envelopes)


def test_forged_rotation_is_refused(
    publisher: Identity, researcher: Identity, tmp_path: Path, registry: str
) -> None:
    old = publisher.key
    _publish(publisher.client, old, 0)
    store = TrustStore(researcher.home)
    now = utc_now()
    store.keys_for(NAMESPACE, offered=researcher.client.namespace_keys(NAMESPACE), now=now)
    # Another institution rotates its own key on the registry: a real, valid chain, but not one
    # that starts at the key pinned for this namespace.
    evil = make_identity(tmp_path, registry, "evil", "institution")
    evil_new = SigningKey.generate()
    evil.client.rotate_key(evil_new)

    def chain_of(keyid: str) -> Callable[[], list[Any]]:
        return lambda: [Envelope.from_dict(r.envelope) for r in researcher.client.rotations(keyid)]

    # A registry that swaps the namespace's key and serves that chain.
    swapped = OfferedKeys(
        {evil_new.keyid: evil_new.public, evil.keyid: evil.key.public},
        rotated={evil.keyid: now},
        fetch_rotations=chain_of(evil.keyid),
    )
    with pytest.raises(UntrustedKeyError, match="no key rotation"):
        store.keys_for(NAMESPACE, offered=swapped, now=now)
    # A rotation from the pinned key signed only by the new key (the pinned key never agreed),
    # and one "from" the pinned key signed by a key that merely claims to be it.
    forged = KeyRotation(
        old_key=old.keyid, new_key=PublicKey.from_verify_key(evil_new.public), created=now
    )
    for signers in ([evil_new], [evil.key, evil_new]):
        offered = OfferedKeys(
            {evil_new.keyid: evil_new.public},
            fetch_rotations=_serving(sign_statement(forged, signers)),
        )
        with pytest.raises(UntrustedKeyError):
            store.keys_for(NAMESPACE, offered=offered, now=now)
    # The pin is untouched, and the real namespace still verifies.
    assert store.pinned(NAMESPACE) == {old.keyid: old.public}
    assert store.retired(NAMESPACE) == {}
    keys = store.keys_for(NAMESPACE, offered=researcher.client.namespace_keys(NAMESPACE), now=now)
    assert set(keys) == {old.keyid}
    evil.client.close()


def test_a_retired_key_verifies_nothing_newer_than_its_rotation(
    publisher: Identity, researcher: Identity
) -> None:
    old = publisher.key
    _publish(publisher.client, old, 0)
    store = TrustStore(researcher.home)
    now = utc_now()
    store.keys_for(NAMESPACE, offered=researcher.client.namespace_keys(NAMESPACE), now=now)
    publisher.client.rotate_key(SigningKey.generate())
    keys = store.keys_for(NAMESPACE, offered=researcher.client.namespace_keys(NAMESPACE), now=now)
    # Pretend the rotation happened before version 1 was made: the old key's signature on it is
    # then one made after its rotation, and refused.
    path = store.path
    data = json.loads(path.read_text())
    data["namespaces"][NAMESPACE]["retired"][old.keyid]["until"] = "2000-01-01T00:00:00Z"
    path.write_text(json.dumps(data))
    with pytest.raises(UntrustedKeyError, match="after that key was rotated"):
        resolve_manifest(researcher.client, store, DATASET, keys=keys, now=now, version=1)


def _cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    who: Identity,
    *args: str,
) -> tuple[int, str, str]:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    for k, v in who.env().items():
        monkeypatch.setenv(k, v)
    capsys.readouterr()
    code = run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_rotate_key_moves_the_identity_and_keeps_the_old_file(
    publisher: Identity,
    researcher: Identity,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    identity = publisher.home / "identity.pem"
    old = publisher.key
    old_pem = identity.read_bytes()
    code, out, err = _cli(
        monkeypatch, capsys, publisher, "rotate-key", "--reason", "laptop lost", "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    new = load_signing_key(identity)
    assert result["old_key"] == old.keyid
    assert result["new_key"] == new.keyid != old.keyid
    assert result["principal"] == old.keyid
    backup = Path(result["old_identity"])
    assert backup.name.startswith("identity.pem.rotated-")
    assert backup.read_bytes() == old_pem
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    assert load_signing_key(backup).keyid == old.keyid
    assert json.loads(public_path(identity).read_text())["keyid"] == new.keyid
    assert list(publisher.home.glob(".identity.pem.rotating-*")) == []
    # Logged in again with the new key: authenticated commands work straight away.
    code, out, err = _cli(monkeypatch, capsys, publisher, "whoami", "--json")
    assert code == 0, err
    assert json.loads(out)["keyid"] == old.keyid
    # The registry recorded why.
    chain = researcher.client.rotations(old.keyid)
    assert [(r.old_key, r.new_key.keyid, r.reason) for r in chain] == [
        (old.keyid, new.keyid, "laptop lost")
    ]
    code, out, _err = _cli(monkeypatch, capsys, publisher, "namespace", "show", NAMESPACE)
    assert code == 0
    assert "rotated" in out

    # Again, to a key from a file; a second backup the same day gets its own name.
    given = SigningKey.generate()
    key_file = publisher.home / "next.pem"
    save_signing_key(given, key_file)
    code, out, err = _cli(
        monkeypatch, capsys, publisher, "rotate-key", "--new-key", str(key_file), "--json"
    )
    assert code == 0, err
    second = json.loads(out)
    assert second["new_key"] == given.keyid
    assert load_signing_key(identity).keyid == given.keyid
    assert Path(second["old_identity"]) != backup
    assert load_signing_key(Path(second["old_identity"])).keyid == new.keyid
    assert backup.exists()
    # The registry refuses to rotate to a key it already knows: nothing moves on disk.
    taken = publisher.home / "taken.pem"
    save_signing_key(researcher.key, taken)
    code, _out, err = _cli(monkeypatch, capsys, publisher, "rotate-key", "--new-key", str(taken))
    assert code == 1
    assert "conflict" in err
    assert load_signing_key(identity).keyid == given.keyid
    # Two old keys, each with its public half.
    assert len(list(publisher.home.glob("identity.pem.rotated-*"))) == 4
    assert list(publisher.home.glob(".identity.pem.rotating-*")) == []


def test_rotated_identity_cannot_log_in(publisher: Identity, tmp_path: Path) -> None:
    old = publisher.key
    publisher.client.rotate_key(SigningKey.generate())
    # An old copy of the identity file.
    stale = RegistryClient(
        load_config(home=publisher.home, registry=publisher.config.registry), key=old
    )
    try:
        with pytest.raises(AuthenticationError, match="rotated"):
            stale.login()
    finally:
        stale.close()


def test_a_grant_by_the_new_key_covers_versions_the_old_key_signed(
    publisher: Identity, researcher: Identity
) -> None:
    """After a rotation the publisher grants its older (encrypted) versions with its new key:
    the grant verifies along the rotation chain (SPEC.md 5.2), the escrow re-wrapped to the new
    key opens their data keys (ENCRYPTION.md 3.4), so the researcher reads version 1."""
    v1 = publish_as(publisher, sample_table(200), dataset=DATASET)
    # The researcher pins the old key before the rotation.
    store = TrustStore(researcher.home)
    store.keys_for(NAMESPACE, offered=researcher.client.namespace_keys(NAMESPACE), now=utc_now())
    old, new = publisher.key, SigningKey.generate()
    publisher.client.rotate_key(new, reason="laptop lost")
    assert rewrap_escrow(publisher.client, [old]) == [DATASET]
    assert rewrap_escrow(publisher.client, [old]) == []  # nothing left to wrap
    request = researcher.client.request_access(DATASET, purpose="after the rotation")
    # approve's up-front check follows the chain too (the new key succeeded the signer of v1)...
    check_grantable(publisher.client, DATASET, min_version=1, max_version=None)
    # ...and refuses a key outside it, before anything is signed.
    with (
        RegistryClient(publisher.config, key=SigningKey.generate()) as stranger_client,
        pytest.raises(MalformedError, match="could not verify for acme/books version 1"),
    ):
        check_grantable(stranger_client, DATASET, min_version=1, max_version=None)
    grant = publisher.client.approve(request.request_id, expires=utc_now() + timedelta(days=1))
    assert grant.publisher == new.keyid
    with open_dataset(DATASET, version=1, client=researcher.client) as ds:
        assert ds.manifest.signer.keyid == old.keyid
        assert ds.grant.signer.keyid == new.keyid
        assert sum(b.num_rows for b in ds) == 200
    assert ds.provenance.manifest_digest == v1.digest
    # Only keys the manifest's signer was rotated to count: a stranger's key grants nothing.
    stranger = SigningKey.generate()
    forged = sign_statement(
        AccessGrant(
            dataset=DATASET,
            publisher=stranger.keyid,
            grantee=researcher.keyid,
            request=request.request_id,
            min_version=1,
            max_version=None,
            not_before=utc_now(),
            expires=utc_now() + timedelta(days=1),
            created=utc_now(),
        ),
        [stranger],
    )
    with pytest.raises(UntrustedKeyError):
        verify_grant(
            forged,
            manifest=ds.manifest,
            grantee=researcher.keyid,
            now=utc_now(),
            successors=store.successors(NAMESPACE, old.keyid),
        )
    assert set(store.successors(NAMESPACE, old.keyid)) == {new.keyid}
