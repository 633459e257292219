"""Bad input in the browser: each case says clearly what happened on the page and changes
nothing on the registry."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from playwright.sync_api import Browser, expect

from ostraca.client.publishing import PublishResult
from ostraca.protocol_spec import SigningKey

from ..client.client_helpers import TERMS, Identity
from ..registry_helpers import Registry
from .browser_helpers import Visitor

SCRYPT_PEM = """\
-----BEGIN ENCRYPTED PRIVATE KEY-----
MIGTME8GCSqGSIb3DQEFDTBCMCEGCSsGAQQB2kcECzAUBAgxAFjvxSpTggICQAAC
AQgCAQEwHQYJYIZIAWUDBAEqBBAvHwCUeaj0zDzob3W7KLhcBECOor9wMSnf5lnO
K0uwAfQhP4MJHEOsjtv4581DrUs+8APDaNE6mQGGZKzHtcK+0caJJPIWFt4ysccJ
3ZCBjgyg
-----END ENCRYPTED PRIVATE KEY-----
"""
"""An Ed25519 key encrypted with scrypt (``openssl pkcs8 -topk8 -scrypt``, passphrase ``pw``):
WebCrypto has no scrypt, so the page cannot open it and must say so."""


def _p256_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("identity.pub.json", b'{"keyid": "00"}', "This file is not a PEM key file"),
        ("public.pem", b"", "holds a public key, not a private key"),
        ("p256.pem", b"", "This is not an Ed25519 private key"),
        ("stranger.pem", b"", "The registry refused this key"),
        ("scrypt.pem", SCRYPT_PEM.encode(), "WebCrypto cannot decrypt"),
    ],
)
def test_unusable_key_files_are_refused_on_the_page(
    browser: Browser, registry: str, tmp_path: Path, name: str, content: bytes, says: str
) -> None:
    stranger = SigningKey.generate()
    made = {
        "public.pem": stranger.to_pem().replace(b"PRIVATE", b"PUBLIC"),
        "p256.pem": _p256_pem(),
        "stranger.pem": stranger.to_pem(),
    }
    path = tmp_path / name
    path.write_bytes(made.get(name, content))
    with Visitor(browser, registry) as someone:
        someone.goto("/signin")
        someone.page.set_input_files("#keyfile", str(path))
        someone.page.get_by_role("button", name="Sign in").click()
        expect(someone.message).to_contain_text(says)
        expect(someone.page.locator("#session")).to_be_hidden()
        assert someone.token_or_none() is None


def test_passphrase_protected_key_asks_for_the_passphrase(
    browser: Browser, registry: str, researcher: Identity, tmp_path: Path
) -> None:
    path = tmp_path / "protected.pem"
    path.write_bytes(researcher.key.to_pem(b"correct horse"))
    with Visitor(browser, registry) as ada:
        ada.goto("/signin")
        ada.page.set_input_files("#keyfile", str(path))
        ada.page.get_by_role("button", name="Sign in").click()
        expect(ada.message).to_contain_text("protected by a passphrase: enter it")
        passphrase = ada.page.get_by_label("Passphrase of the key file")
        expect(passphrase).to_be_focused()
        passphrase.fill("wrong horse")
        ada.page.get_by_role("button", name="Sign in").click()
        expect(ada.message).to_contain_text("Wrong passphrase")
        assert ada.token_or_none() is None
        passphrase.fill("correct horse")
        ada.page.get_by_role("button", name="Sign in").click()
        expect(ada.message).to_contain_text("Signed in as ada")
        kept = ada.page.evaluate(
            "async () => { const s = await (await import('/static/ostraca.js')).getSession();"
            " return [s.key.extractable, s.key.algorithm.name, s.keyid]; }"
        )
        assert kept == [False, "Ed25519", researcher.keyid]


def test_ended_session_is_said_and_nothing_is_requested(
    browser: Browser, registry: str, researcher: Identity, books: PublishResult
) -> None:
    with Visitor(browser, registry) as ada:
        ada.sign_in(researcher.home / "identity.pem")
        ada.goto("/datasets/acme/books")
        token = ada.token()
        httpx.delete(f"{registry}/v1/auth/token", headers={"Authorization": f"Bearer {token}"})
        ada.page.get_by_label("Purpose").fill("A thesis")
        ada.page.get_by_label("I have read and accept the terms above").check()
        ada.page.get_by_role("button", name="Sign and send the request").click()
        expect(ada.message).to_contain_text("Your session has expired or was ended: sign in again")
        expect(ada.message).to_be_focused()
    assert researcher.client.list_requests() == []


def test_expired_session_is_said_before_anything_is_sent(
    browser: Browser, registry: str, researcher: Identity, books: PublishResult
) -> None:
    with Visitor(browser, registry) as ada:
        ada.sign_in(researcher.home / "identity.pem")
        ada.page.clock.install()
        ada.goto("/datasets/acme/books")
        ada.page.clock.fast_forward("02:00:00")  # past the token's hour
        ada.page.get_by_label("Purpose").fill("A thesis")
        ada.page.get_by_label("I have read and accept the terms above").check()
        ada.page.get_by_role("button", name="Sign and send the request").click()
        expect(ada.message).to_contain_text("Your session has expired or was ended: sign in again")
        assert not [u for u in ada.requested if u.endswith("/v1/requests")]
    assert researcher.client.list_requests() == []


def test_approving_a_request_withdrawn_meanwhile(
    browser: Browser,
    registry: str,
    publisher: Identity,
    researcher: Identity,
    books: PublishResult,
) -> None:
    request = researcher.client.request_access("acme/books", purpose="A thesis")
    with Visitor(browser, registry) as lab:
        lab.sign_in(publisher.home / "identity.pem")
        lab.goto("/publisher")
        card = lab.page.locator("#inbox li").filter(has_text="ada asks for acme/books")
        expect(card).to_be_visible()
        publisher.client.deny_request(request.request_id, "withdrawn by the researcher")
        card.get_by_role("button", name="Sign and approve").click()
        expect(lab.message).to_contain_text("This request is no longer pending")
        expect(lab.message).to_contain_text("nothing was granted")
        expect(lab.page.locator("#inbox-empty")).to_be_visible()
    assert publisher.client.list_grants() == []
    assert researcher.client.get_request(request.request_id).status == "denied"


def _delete_dataset(reg: Registry, name: str) -> None:
    """What an operator's clean-up would do: the dataset and its versions leave the database."""
    with sqlite3.connect(reg.data_dir / "registry.db") as db:
        [dataset_id] = db.execute("SELECT id FROM datasets WHERE name = ?", (name,)).fetchone()
        versions = "SELECT id FROM versions WHERE dataset_id = ?"
        db.execute(f"DELETE FROM version_blobs WHERE version_id IN ({versions})", (dataset_id,))
        db.execute("DELETE FROM versions WHERE dataset_id = ?", (dataset_id,))
        db.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,))


def test_dataset_deleted_meanwhile(
    browser: Browser,
    registry_server: Registry,
    researcher: Identity,
    publish_table: Callable[..., PublishResult],
) -> None:
    publish_table(dataset="acme/gone")
    with Visitor(browser, registry_server.url) as ada:
        ada.sign_in(researcher.home / "identity.pem")
        ada.goto("/datasets/acme/gone")
        expect(ada.page.locator("#terms")).to_have_text(TERMS)
        _delete_dataset(registry_server, "acme/gone")
        ada.page.get_by_label("Purpose").fill("A thesis")
        ada.page.get_by_label("I have read and accept the terms above").check()
        ada.page.get_by_role("button", name="Sign and send the request").click()
        expect(ada.message).to_contain_text("acme/gone is no longer on the registry")
        expect(ada.message).to_contain_text("nothing was requested")
        ada.page.reload()
        expect(ada.page.get_by_role("heading", level=1)).to_have_text("No such dataset")
    assert researcher.client.list_requests() == []
    listed = httpx.get(f"{registry_server.url}/v1/datasets").json()
    assert json.dumps(listed).count("acme/gone") == 0
