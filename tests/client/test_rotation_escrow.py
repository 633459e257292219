"""Key rotation and encrypted data (ENCRYPTION.md 3.4, 7.1, 7.2), against a real registry over
HTTP: after ``rotate-key`` a publisher's escrow is wrapped to the new identity, so a machine
holding only the new identity file approves requests for versions the old key encrypted; an
escrow signed by a key outside the rotation chain is refused; a researcher never obtains the
escrow; a researcher's encryption key rotation keeps its old key grants readable."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from ostraca.client.api import RegistryClient
from ostraca.client.config import load_config
from ostraca.client.encryption import identity_encryption_key, key_grant_envelope
from ostraca.client.keyflow import (
    current_encryption_key,
    ensure_encryption_key,
    escrow_ring,
    key_grants,
    own_keys,
    post_key_grant,
    rewrap_escrow,
)
from ostraca.client.keystore import load_signing_key
from ostraca.client.publishing import PublishResult
from ostraca.client.stream import open_dataset
from ostraca.client.trust import TrustStore
from ostraca.protocol_spec import (
    AccessDeniedError,
    Envelope,
    OstracaError,
    SigningKey,
    UntrustedKeyError,
    utc_now,
)
from ostraca.protocol_spec.crypto import DataKey
from ostraca.protocol_spec.enckeys import EncryptionPublicKey, KeyGrant, open_key_grant
from ostraca.protocol_spec.errors import WrongRecipientError

from .client_helpers import NAMESPACE, Identity, make_identity, sample_table
from .stream_helpers import grant_access
from .test_rotation import _cli

DATASET = f"{NAMESPACE}/books"


def _new_machine(tmp_path: Path, registry: str, publisher: Identity) -> RegistryClient:
    """A machine that holds the identity file only: no former key files, no staging, no cache."""
    home = tmp_path / "new-machine"
    home.mkdir()
    shutil.copy(publisher.home / "identity.pem", home / "identity.pem")
    fresh = RegistryClient(load_config(home=home, registry=registry))
    fresh.login()
    return fresh


def _escrow_of(client: RegistryClient) -> list[KeyGrant]:
    return [
        KeyGrant.from_json_obj(json.loads(Envelope.from_dict(i.envelope).payload))
        for i in key_grants(client, DATASET)
        if i.grant_id is None
    ]


def _escrow(
    signer: SigningKey, keys: Mapping[int, Mapping[str, DataKey]], to: EncryptionPublicKey
) -> Envelope:
    """An escrow key grant of ``keys`` signed by ``signer`` (its grantee), wrapped to ``to``."""
    return key_grant_envelope(
        signer,
        keys,
        dataset=DATASET,
        grantee=signer.keyid,
        recipient=to,
        grant=None,
        created=utc_now(),
    )


def test_after_rotate_key_a_new_machine_approves_old_encrypted_versions(
    tmp_path: Path,
    registry: str,
    publisher: Identity,
    researcher: Identity,
    publish_table: Callable[..., PublishResult],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = sample_table(200), sample_table(150, seed=1)
    publish_table(first)
    # The researcher pins the publisher's key before the rotations (it follows them from it).
    TrustStore(researcher.home).keys_for(
        NAMESPACE, offered=researcher.client.namespace_keys(NAMESPACE), now=utc_now()
    )
    original = publisher.key
    code, out, err = _cli(monkeypatch, capsys, publisher, "rotate-key", "--json")
    assert code == 0, err
    assert json.loads(out)["escrow_rewrapped"] == [DATASET]
    middle = load_signing_key(publisher.home / "identity.pem")
    # Version 2 is encrypted under the middle key, then the publisher rotates once more.
    publisher.client.close()
    publisher.key, publisher.client = middle, RegistryClient(publisher.config)
    publish_table(second)
    code, out, err = _cli(monkeypatch, capsys, publisher, "rotate-key", "--json")
    assert code == 0, err
    assert json.loads(out)["escrow_rewrapped"] == [DATASET]
    # Each rotation's escrow is signed by the key it was made with and wrapped to that key's
    # derived encryption key (ENCRYPTION.md 3.3).
    newest = load_signing_key(publisher.home / "identity.pem")
    fresh = _new_machine(tmp_path, registry, publisher)
    escrows = _escrow_of(fresh)
    assert sorted((e.publisher, e.recipient, len(e.keys)) for e in escrows) == sorted(
        [
            (original.keyid, identity_encryption_key(original).public.keyid, 1),
            (middle.keyid, identity_encryption_key(middle).public.keyid, 1),  # the re-wrap
            (middle.keyid, identity_encryption_key(middle).public.keyid, 1),  # version 2
            (newest.keyid, identity_encryption_key(newest).public.keyid, 2),  # the re-wrap
        ]
    )
    # The new machine can re-derive only the newest identity's keys, and that is enough.
    assert own_keys(fresh).grantees == {newest.keyid}
    grant_access(fresh, researcher.client, DATASET)
    for version, table in ((1, first), (2, second)):
        with open_dataset(DATASET, version=version, client=researcher.client) as ds:
            assert ds.to_table().equals(table)
    assert rewrap_escrow(fresh, [original, middle]) == []  # everything is escrowed already
    fresh.close()


def test_an_escrow_signed_outside_the_rotation_chain_is_refused(
    tmp_path: Path,
    registry: str,
    publisher: Identity,
    publish_table: Callable[..., PublishResult],
) -> None:
    publish_table(sample_table(50))
    old, new = publisher.key, SigningKey.generate()
    publisher.client.rotate_key(new)
    current = ensure_encryption_key(publisher.client)
    keys = escrow_ring(
        publisher.client, DATASET, publisher_keys={}, now=utc_now(), identities=[old]
    ).keys()
    assert keys

    # The rotated key signs nothing new, a key never in the chain nothing at all.
    with pytest.raises(UntrustedKeyError):
        post_key_grant(publisher.client, _escrow(old, keys, current.public))
    with pytest.raises(UntrustedKeyError):
        post_key_grant(publisher.client, _escrow(SigningKey.generate(), keys, current.public))
    # Another principal's key, even wrapped to its own registered encryption key, is not the
    # namespace owner's.
    evil = make_identity(tmp_path, registry, "evil", "institution")
    forged = _escrow(evil.key, keys, ensure_encryption_key(evil.client).public)
    with pytest.raises(AccessDeniedError):
        post_key_grant(evil.client, forged)
    evil.client.close()
    # Nothing of that was stored; a re-wrap from a stranger's "former" key finds nothing.
    assert [e.publisher for e in _escrow_of(publisher.client)] == [old.keyid]
    assert rewrap_escrow(publisher.client, [SigningKey.generate()]) == []
    assert rewrap_escrow(publisher.client, [old]) == [DATASET]


def test_a_researcher_cannot_obtain_or_open_the_escrow(
    publisher: Identity, researcher: Identity, publish_table: Callable[..., PublishResult]
) -> None:
    publish_table(sample_table(50))
    grant = grant_access(publisher.client, researcher.client, DATASET)
    # The researcher's listing holds its own key grant only, never the publisher's escrow.
    mine = key_grants(researcher.client, DATASET)
    assert [(i.grantee, i.grant_id) for i in mine] == [(researcher.keyid, grant.grant_id)]
    [escrow] = [i for i in key_grants(publisher.client, DATASET) if i.grant_id is None]
    # It cannot store an escrow of its own for the dataset (not the namespace owner)...
    own = ensure_encryption_key(researcher.client)
    ring = escrow_ring(publisher.client, DATASET, publisher_keys={}, now=utc_now())
    with pytest.raises(AccessDeniedError):
        post_key_grant(researcher.client, _escrow(researcher.key, ring.keys(), own.public))
    # ...and a leaked copy of the escrow opens with no key of the researcher's.
    statement = KeyGrant.from_json_obj(json.loads(Envelope.from_dict(escrow.envelope).payload))
    with pytest.raises(WrongRecipientError):
        open_key_grant(statement, private=own)
    forged_recipient = statement.model_copy(update={"recipient": own.public.keyid})
    with pytest.raises(OstracaError, match="does not open"):
        open_key_grant(forged_recipient, private=own)


def test_a_researcher_rotating_its_encryption_key_keeps_old_grants_readable(
    publisher: Identity,
    researcher: Identity,
    publish_table: Callable[..., PublishResult],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = sample_table(80), sample_table(90, seed=1)
    publish_table(first)
    grant_access(publisher.client, researcher.client, DATASET)
    before = identity_encryption_key(researcher.key).public.keyid
    code, out, err = _cli(monkeypatch, capsys, researcher, "rotate-key", "--encryption", "--json")
    assert code == 0, err
    after = json.loads(out)["encryption_key"]
    assert after == identity_encryption_key(researcher.key, 1).public.keyid != before
    # The publisher now wraps to the new key: version 2 reaches the live grant that way.
    current = current_encryption_key(publisher.client, researcher.keyid, now=utc_now())
    assert current is not None
    assert current.keyid == after
    publish_table(second)
    assert sorted(i.recipient for i in key_grants(researcher.client, DATASET)) == sorted(
        [before, after]
    )
    assert ensure_encryption_key(researcher.client).public.keyid == after
    for version, table in ((1, first), (2, second)):
        with open_dataset(DATASET, version=version, client=researcher.client) as ds:
            assert ds.to_table().equals(table)
