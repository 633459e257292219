"""Approving in the browser wraps the data keys (ENCRYPTION.md 6): Chromium, a real registry over
HTTP, the SDK on the researcher's side.

A grant approved in the page decrypts with the SDK. The page refuses, and grants nothing, when
the escrow or a manifest it reads was tampered with or hidden, when the grantee's encryption key
is not bound by the grantee's own signature, or when the grantee registered none (until they
sign in on the site). The page's KeyGrant opens only with the grantee's key, and no private key
leaves the page."""

from __future__ import annotations

import base64
import functools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Route, expect

from ostraca.client.encryption import encryption_key_envelope, identity_encryption_key
from ostraca.client.keyflow import key_grants
from ostraca.client.publishing import PublishResult
from ostraca.client.stream import open_dataset
from ostraca.protocol_spec import (
    AccessRequest,
    DatasetManifest,
    Envelope,
    canonical_bytes,
    sign_statement,
    utc_now,
)
from ostraca.protocol_spec.crypto import GroupContext
from ostraca.protocol_spec.enckeys import (
    EncryptionKey,
    EncryptionPrivateKey,
    KeyGrant,
    open_key_grant,
    unwrap_data_key,
    verify_key_grant,
)
from ostraca.protocol_spec.errors import WrongKeyError

from ..client.client_helpers import Identity, make_identity, sample_table
from .browser_helpers import Visitor

DATASET = "acme/books"


def _request_in_page(ada: Visitor) -> None:
    ada.goto(f"/datasets/{DATASET}")
    ada.page.get_by_label("Purpose").fill("Train a small LM for my thesis")
    ada.page.get_by_label("I have read and accept the terms above").check()
    ada.page.get_by_role("button", name="Sign and send the request").click()
    expect(ada.message).to_contain_text("Request sent")


def _approve_in_page(lab: Visitor, requester: str) -> None:
    lab.goto("/publisher")
    card = lab.page.locator("#inbox li").filter(has_text=f"{requester} asks for {DATASET}")
    card.get_by_role("button", name="Sign and approve").click()


def _secrets(identity: Identity) -> list[str]:
    """Every encoding of the identity's seed, of the signature its encryption key is derived
    from, and of that key."""
    seed = identity.key.to_pem()
    der = base64.b64decode(b"".join(seed.splitlines()[1:-1]))[-32:]
    signature = identity.key.sign(EncryptionPrivateKey.derivation_message(0))
    derived = identity_encryption_key(identity.key).secret
    return [
        raw.hex() if hex_ else base64.b64encode(raw).decode()
        for raw in (der, signature, derived, derived[:64], derived[64:])
        for hex_ in (True, False)
    ]


def _manifest(identity: Identity, version: int) -> DatasetManifest:
    env = identity.client.get_manifest_envelope(DATASET, version)
    return DatasetManifest.from_json_obj(json.loads(env.payload))


def _check_key_grant(publisher: Identity, researcher: Identity) -> None:
    """The KeyGrant the page posted: the SDK's canonical form, signed by the publisher, wrapped
    to the researcher's derived key, opening to the manifests' keys, and to nothing else."""
    [item] = [i for i in key_grants(researcher.client, DATASET) if i.grant_id is not None]
    envelope = Envelope.from_dict(item.envelope)
    mine = identity_encryption_key(researcher.key)
    verified = verify_key_grant(
        envelope,
        publisher_keys={publisher.keyid: publisher.key.public},
        now=utc_now(),
        grantee=researcher.keyid,
        recipient=mine.public.keyid,
    )
    grant: KeyGrant = verified.statement
    assert grant.to_payload() == envelope.payload
    keys = open_key_grant(grant, private=mine)
    assert sorted(keys) == [(1, "default"), (2, "default")]
    for (version, group), key in keys.items():
        m = _manifest(publisher, version)
        assert m.encryption is not None
        key.check(
            m.encryption[group].key_commitment,
            GroupContext(dataset=DATASET, version=version, group=group),
        )
    theirs = identity_encryption_key(publisher.key)
    first = grant.keys[0]
    context = GroupContext(dataset=DATASET, version=first.version, group=first.group)
    wrapped = base64.b64decode(first.wrapped)
    with pytest.raises(WrongKeyError):  # the publisher's own key does not open it
        unwrap_data_key(wrapped, private=theirs, context=context, grantee=researcher.keyid)
    with pytest.raises(WrongKeyError):  # nor is it a key for another grantee
        unwrap_data_key(wrapped, private=mine, context=context, grantee=publisher.keyid)


def _check_registered_key(researcher: Identity) -> None:
    """The encryption key the page registered is the SDK's, in the very envelope it signs."""
    listed = researcher.client._send("GET", f"/v1/principals/{researcher.keyid}/encryption-keys")
    [item] = listed.json()["items"]
    stored = EncryptionKey.from_json_obj(json.loads(Envelope.from_dict(item["envelope"]).payload))
    sdk = encryption_key_envelope(
        researcher.key, identity_encryption_key(researcher.key), created=stored.created
    )
    assert canonical_bytes(item["envelope"]) == sdk.to_json()


def test_a_grant_approved_in_the_page_decrypts_with_the_sdk(
    browser: Browser,
    registry: str,
    publisher: Identity,
    researcher: Identity,
    publish_table: Callable[..., PublishResult],
) -> None:
    first, second = sample_table(1500), sample_table(300, seed=1)
    publish_table(first, shard_bytes=65536, chunk_bytes=65536)
    publish_table(second)
    with Visitor(browser, registry) as ada, Visitor(browser, registry) as lab:
        ada.sign_in(researcher.home / "identity.pem")
        _request_in_page(ada)
        _check_registered_key(researcher)
        lab.sign_in(publisher.home / "identity.pem")
        _approve_in_page(lab, "ada")
        expect(lab.message).to_contain_text("Approved: grant")
        expect(lab.message).to_contain_text("with 2 data keys wrapped to their encryption key")
        for person, identity in ((ada, researcher), (lab, publisher)):
            assert not [s for s in _secrets(identity) for body in person.sent if s in body]
            assert person.outside_requests() == []
    _check_key_grant(publisher, researcher)
    for version, table in ((1, first), (2, second)):
        with open_dataset(DATASET, version=version, client=researcher.client) as ds:
            assert ds.to_table().equals(table)


def _refused(lab: Visitor, publisher: Identity, requester: str, text: str) -> None:
    _approve_in_page(lab, requester)
    expect(lab.message).to_contain_text(text)
    expect(lab.message).to_contain_text("Nothing was granted")
    assert publisher.client.list_grants() == []
    assert [r.status for r in publisher.client.list_requests()] == ["pending"]
    assert all(i.grant_id is None for i in key_grants(publisher.client, DATASET))


def _fulfil_changed(route: Route, change: Callable[[Any], None]) -> None:
    """Answer with the registry's real answer, changed (a compromised registry)."""
    response = route.fetch()
    body = response.json()
    change(body)
    route.fulfill(response=response, json=body)


def _tampered_payload(envelope: dict[str, Any]) -> None:
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["keys"][0]["wrapped"] = base64.b64encode(os.urandom(1168)).decode()
    envelope["payload"] = base64.b64encode(canonical_bytes(statement)).decode()


def _resigned(mallory: Identity) -> Callable[[dict[str, Any]], None]:
    def change(envelope: dict[str, Any]) -> None:
        statement = KeyGrant.from_json_obj(json.loads(base64.b64decode(envelope["payload"])))
        envelope.update(json.loads(sign_statement(statement, [mallory.key]).to_json()))

    return change


def _escrows(tamper: Callable[[dict[str, Any]], None]) -> Callable[[Any], None]:
    def change(body: Any) -> None:
        for item in body["items"]:
            if item["grant_id"] is None:
                tamper(item["envelope"])

    return change


def _hidden(body: Any) -> None:
    body["items"] = [i for i in body["items"] if i["grant_id"] is not None]


def _unencrypted(envelope: dict[str, Any]) -> None:
    manifest = json.loads(base64.b64decode(envelope["payload"]))
    manifest["encryption"] = None
    envelope["payload"] = base64.b64encode(canonical_bytes(manifest)).decode()


NOT_SIGNED = "is not signed by a key it should be signed by"


@pytest.fixture
def mallory(
    tmp_path: Path, registry: str, researcher: Identity, books: PublishResult
) -> Iterator[Identity]:
    """An outsider with a registered key, once ada has asked for ``acme/books``."""
    researcher.client.request_access(DATASET, purpose="reading")
    outsider = make_identity(tmp_path, registry, "mallory", "researcher")
    yield outsider
    outsider.client.close()


Change = Callable[[Any], None]


def _attacked(
    browser: Browser, registry: str, publisher: Identity, routes: dict[str, Change], refusal: str
) -> None:
    """The publisher approves ada's request while the registry answers ``routes`` changed."""
    with Visitor(browser, registry) as lab:
        for pattern, change in routes.items():
            lab.page.route(pattern, functools.partial(_fulfil_changed, change=change))
        lab.sign_in(publisher.home / "identity.pem")
        _refused(lab, publisher, "ada", refusal)


@pytest.mark.parametrize(
    ("attack", "refusal"),
    [
        ("tampered payload", NOT_SIGNED),
        ("signed by an outsider", NOT_SIGNED),
        ("escrow hidden", "no escrowed data key of acme/books version 1 group default opens"),
        ("manifest made plaintext", NOT_SIGNED),
    ],
)
def test_a_tampered_escrow_is_refused_in_the_page(
    attack: str,
    refusal: str,
    browser: Browser,
    registry: str,
    publisher: Identity,
    mallory: Identity,
) -> None:
    path, change = {
        "tampered payload": ("key-grants", _escrows(_tampered_payload)),
        "signed by an outsider": ("key-grants", _escrows(_resigned(mallory))),
        "escrow hidden": ("key-grants", _hidden),
        "manifest made plaintext": ("versions/1/manifest", _unencrypted),
    }[attack]
    _attacked(browser, registry, publisher, {f"**/v1/datasets/{DATASET}/{path}": change}, refusal)


@pytest.mark.parametrize(
    ("attack", "refusal"),
    [
        ("signed by another key", NOT_SIGNED),
        ("another key under the grantee's id", "with another key's bytes"),
    ],
)
def test_an_encryption_key_not_bound_by_the_grantee_is_refused(
    attack: str,
    refusal: str,
    browser: Browser,
    registry: str,
    publisher: Identity,
    researcher: Identity,
    mallory: Identity,
) -> None:
    theirs = identity_encryption_key(mallory.key)
    forged = EncryptionKey(
        owner=researcher.keyid,
        public=theirs.public.b64,
        keyid=theirs.public.keyid,
        created=utc_now(),
    )
    envelope = json.loads(sign_statement(forged, [mallory.key]).to_json())

    def swap_key(body: Any) -> None:
        body["items"] = [{**body["items"][0], "keyid": theirs.public.keyid, "envelope": envelope}]

    def swap_principal(body: Any) -> None:  # mallory's Ed25519 key listed under ada's id
        body["keys"] = [{**body["keys"][0], "public": mallory.key.public.b64}]

    routes: dict[str, Change] = {f"**/v1/principals/{researcher.keyid}/encryption-keys": swap_key}
    if attack != "signed by another key":
        routes[f"**/v1/principals/{researcher.keyid}"] = swap_principal
    _attacked(browser, registry, publisher, routes, refusal)


def test_a_grantee_without_an_encryption_key_is_refused(
    browser: Browser,
    tmp_path: Path,
    registry: str,
    publisher: Identity,
    books: PublishResult,
) -> None:
    silent = make_identity(tmp_path, registry, "silent", "researcher")
    request = AccessRequest(
        dataset=DATASET,
        requester=silent.keyid,
        purpose="no encryption key",
        terms_sha256=silent.client.get_dataset(DATASET).terms_sha256,
        accept_terms=True,
        created=utc_now(),
        nonce="0" * 32,
    )
    silent.client.file_request(sign_statement(request, [silent.key]))
    with Visitor(browser, registry) as lab, Visitor(browser, registry) as them:
        lab.sign_in(publisher.home / "identity.pem")
        _refused(lab, publisher, "silent", "has registered no encryption key")
        # Signing in on the site registers the derived key; the same request is approved then.
        them.sign_in(silent.home / "identity.pem")
        _approve_in_page(lab, "silent")
        expect(lab.message).to_contain_text("with 1 data key wrapped to their encryption key")
    with open_dataset(DATASET, client=silent.client) as ds:
        assert ds.to_table().equals(sample_table())
    silent.client.close()


def test_a_plaintext_dataset_is_approved_without_keys(
    browser: Browser,
    registry: str,
    publisher: Identity,
    researcher: Identity,
    publish_table: Callable[..., PublishResult],
) -> None:
    table = sample_table(200)
    publish_table(table, encrypt=False)
    researcher.client.request_access(DATASET, purpose="reading")
    with Visitor(browser, registry) as lab:
        lab.sign_in(publisher.home / "identity.pem")
        _approve_in_page(lab, "ada")
        expect(lab.message).to_contain_text("Approved: grant")
        expect(lab.message).to_have_text(
            f"Approved: grant {_grant_prefix(publisher)} for {DATASET} to ada."
        )
    assert key_grants(researcher.client, DATASET) == []
    with open_dataset(DATASET, client=researcher.client) as ds:
        assert ds.to_table().equals(table)


def _grant_prefix(publisher: Identity) -> str:
    [grant] = publisher.client.list_grants()
    return f"{grant.grant_id[:12]}…"
