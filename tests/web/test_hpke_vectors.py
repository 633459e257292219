"""The browser's key wrapping (server/static/hpke.js) against Python's `cryptography`, in Chromium:
encryption keys derived from an identity by a WebCrypto signature equal the SDK's and the
vectors', wrapped keys go both ways (JS seal -> Python open, Python seal -> JS open), and the
vectors' key grants open in the page."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from importlib import resources
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from ostraca.protocol_spec import SigningKey
from ostraca.protocol_spec.crypto import DataKey, GroupContext
from ostraca.protocol_spec.enckeys import (
    EncryptionPrivateKey,
    unwrap_data_key,
    wrap_data_key,
    wrap_info,
)
from ostraca.protocol_spec.errors import WrongKeyError

VECTORS = json.loads(
    resources.files("ostraca.protocol_spec").joinpath("vectors/encryption.json").read_text()
)

DERIVE = """async ({pem}) => {
  const sign = await import("/static/sign.js");
  const hpke = await import("/static/hpke.js");
  const id = await sign.importIdentity(pem);
  const sig = await sign.sign(id.key, hpke.derivationMessage(0));
  const kp = hpke.keyFromSignature(sig);
  return {keyid: id.keyid, message: sign.hex(hpke.derivationMessage(0)), sig: sign.hex(sig),
          secret: sign.hex(kp.secret), public: sign.toBase64(kp.publicKey), enckeyid: kp.keyid};
}"""

OPEN = """async ({secret, dataset, version, group, grantee, recipient, wrapped}) => {
  const sign = await import("/static/sign.js");
  const hpke = await import("/static/hpke.js");
  const context = hpke.groupContext(dataset, version, group);
  const info = hpke.wrapInfo(context, grantee, recipient);
  try {
    const key = await hpke.open(sign.fromHex(secret, 96), info, sign.fromBase64(wrapped));
    return {info: sign.hex(info), key: sign.hex(key), commitment: hpke.commitment(key, context)};
  } catch (error) {
    return {info: sign.hex(info), error: error.constructor.name};
  }
}"""

SEAL = """async ({public_b64, dataset, version, group, grantee, key}) => {
  const sign = await import("/static/sign.js");
  const hpke = await import("/static/hpke.js");
  const publicKey = sign.fromBase64(public_b64);
  const context = hpke.groupContext(dataset, version, group);
  const info = hpke.wrapInfo(context, grantee, hpke.keyId(publicKey));
  return sign.toBase64(await hpke.seal(publicKey, info, sign.fromHex(key, 32)));
}"""

PUBLIC = """async ({secret}) => {
  const sign = await import("/static/sign.js");
  const hpke = await import("/static/hpke.js");
  const kp = hpke.keyPair(sign.fromHex(secret, 96));
  return {public: sign.toBase64(kp.publicKey), keyid: kp.keyid};
}"""


@pytest.fixture
def page(browser: Browser, registry: str) -> Any:
    context = browser.new_context()
    page = context.new_page()
    page.goto(registry + "/")
    yield page
    context.close()


def _data_key(dataset: str, version: int, group: str) -> bytes:
    return hashlib.sha256(f"vector data key {dataset} {version} {group}".encode()).digest()


@pytest.mark.parametrize("vector", VECTORS["keys"], ids=lambda v: v["name"])
def test_the_page_derives_the_vectors_encryption_key(page: Page, vector: dict[str, str]) -> None:
    identity = SigningKey.from_seed(bytes.fromhex(vector["identity_seed_hex"]))
    got = page.evaluate(DERIVE, {"pem": identity.to_pem().decode()})
    assert got == {
        "keyid": vector["identity_keyid"],
        "message": vector["derivation_message_hex"],
        "sig": vector["signature_hex"],
        "secret": vector["secret_hex"],
        "public": vector["public_b64"],
        "enckeyid": vector["keyid"],
    }


def test_the_page_derives_the_sdks_key_from_a_fresh_identity(page: Page) -> None:
    identity = SigningKey.generate()
    got = page.evaluate(DERIVE, {"pem": identity.to_pem().decode()})
    sdk = EncryptionPrivateKey.derive(identity)
    assert (got["secret"], got["public"], got["enckeyid"]) == (
        sdk.secret.hex(),
        sdk.public.b64,
        sdk.public.keyid,
    )
    secret = os.urandom(96)
    assert page.evaluate(PUBLIC, {"secret": secret.hex()}) == {
        "public": EncryptionPrivateKey(secret).public.b64,
        "keyid": EncryptionPrivateKey(secret).public.keyid,
    }


def test_the_vectors_key_grants_open_in_the_page(page: Page) -> None:
    secrets = {k["keyid"]: k["secret_hex"] for k in VECTORS["keys"]}
    for vector in (s for s in VECTORS["statements"] if s["name"].startswith("key-grant")):
        envelope = json.loads(vector["envelope"])
        grant = json.loads(base64.b64decode(envelope["payload"]))
        for item in grant["keys"]:
            got = page.evaluate(
                OPEN,
                {
                    "secret": secrets[grant["recipient"]],
                    "dataset": grant["dataset"],
                    "version": item["version"],
                    "group": item["group"],
                    "grantee": grant["grantee"],
                    "recipient": grant["recipient"],
                    "wrapped": item["wrapped"],
                },
            )
            assert got["info"] == vector["wrap_info_hex"][item["group"]]
            assert got["key"] == _data_key(grant["dataset"], item["version"], item["group"]).hex()
            assert got["commitment"] == item["key_commitment"]


def test_wrapped_keys_go_both_ways_between_the_page_and_python(page: Page) -> None:
    private = EncryptionPrivateKey.generate()
    grantee = os.urandom(32).hex()
    context = GroupContext(dataset="acme/books", version=7, group="pii")
    where = {"dataset": "acme/books", "version": 7, "group": "pii", "grantee": grantee}
    key = DataKey(os.urandom(32))
    # Python seals, the page opens.
    wrapped = wrap_data_key(key, recipient=private.public, context=context, grantee=grantee)
    opened = page.evaluate(
        OPEN,
        where
        | {
            "secret": private.secret.hex(),
            "recipient": private.public.keyid,
            "wrapped": base64.b64encode(wrapped).decode(),
        },
    )
    assert (
        opened["info"] == wrap_info(context, grantee=grantee, recipient=private.public.keyid).hex()
    )
    assert opened["key"] == key.raw.hex()
    assert opened["commitment"] == key.commitment(context)
    # The page seals, Python opens; randomized, so two seals differ.
    sealed = [
        base64.b64decode(
            page.evaluate(SEAL, where | {"public_b64": private.public.b64, "key": key.raw.hex()})
        )
        for _ in range(2)
    ]
    assert sealed[0] != sealed[1]
    for blob in sealed:
        got = unwrap_data_key(blob, private=private, context=context, grantee=grantee)
        assert got.raw == key.raw
    # Bound to the grantee, the context and the recipient key: anything else does not open.
    with pytest.raises(WrongKeyError):
        unwrap_data_key(sealed[0], private=private, context=context, grantee=os.urandom(32).hex())
    other = GroupContext(dataset="acme/books", version=8, group="pii")
    with pytest.raises(WrongKeyError):
        unwrap_data_key(sealed[0], private=private, context=other, grantee=grantee)
    stranger = EncryptionPrivateKey.generate()
    refused = page.evaluate(
        OPEN,
        where
        | {
            "secret": stranger.secret.hex(),
            "recipient": private.public.keyid,
            "wrapped": base64.b64encode(wrapped).decode(),
        },
    )
    assert refused["error"] == "WrongKeyError"
