"""Table-driven hostile input: each case is a name, the bytes, and the error code expected.

Every case must raise a typed :class:`OstracaError` with that code: never another exception,
never a silent accept.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from ostraca.protocol_spec import (
    AccessGrant,
    DatasetManifest,
    Envelope,
    KeyRotation,
    OstracaError,
    PublicKey,
    SigningKey,
    TrainingAttestation,
    VerifyKey,
    canonical_bytes,
    parse_canonical,
    sign_envelope,
    split_dataset,
    verify_manifest,
)
from ostraca.protocol_spec.auth import login_message, registration_message
from ostraca.protocol_spec.canonical import parse_strict

KEY = SigningKey.from_seed(b"\x07" * 32)
NOW = datetime(2024, 6, 1, tzinfo=UTC)
MANIFEST_T = DatasetManifest.PAYLOAD_TYPE


def _envelope(body: bytes, **override: Any) -> bytes:
    sig = base64.b64encode(KEY.sign(b"x")).decode()
    obj: dict[str, Any] = {
        "payload": base64.b64encode(body).decode(),
        "payloadType": MANIFEST_T,
        "signatures": [{"keyid": KEY.keyid, "sig": sig}],
    }
    obj.update(override)
    return canonical_bytes(obj)


# (name, bytes, expected code): Envelope.from_json, then verification as a manifest.
ENVELOPES: list[tuple[str, bytes, str]] = [
    ("empty", b"", "malformed"),
    ("whitespace", b"   \n", "malformed"),
    ("nul", b"\x00", "malformed"),
    ("not-utf8", b'{"payload":"\xff"}', "malformed"),
    ("utf16-bom", "\ufeff{}".encode("utf-16"), "malformed"),
    ("truncated", _envelope(b"{}")[:-5], "malformed"),
    ("string", b'"payload"', "malformed"),
    ("number", b"1", "malformed"),
    ("null", b"null", "malformed"),
    ("deep-nesting", b"[" * 100_000 + b"]" * 100_000, "malformed"),
    ("nan", b'{"payload":NaN}', "non_canonical"),
    ("float", b'{"payload":"","x":1.5}', "non_canonical"),
    ("duplicate", b'{"payload":"","payload":""}', "non_canonical"),
    ("huge-int", b'{"x":' + b"9" * 10_000 + b"}", "malformed"),
    ("payload-number", _envelope(b"{}", payload=5), "malformed"),
    ("payload-bad-padding", _envelope(b"{}", payload="e30"), "malformed"),
    ("payload-url-alphabet", _envelope(b"{}", payload="-_-_"), "malformed"),
    ("payload-with-newline", _envelope(b"{}", payload="e30=\n"), "malformed"),
    ("type-empty", _envelope(b"{}", payloadType=""), "malformed"),
    ("type-number", _envelope(b"{}", payloadType=1), "malformed"),
    ("signatures-object", _envelope(b"{}", signatures={}), "malformed"),
    ("signatures-empty", _envelope(b"{}", signatures=[]), "malformed"),
    ("signature-string", _envelope(b"{}", signatures=["x"]), "malformed"),
    ("signature-no-sig", _envelope(b"{}", signatures=[{"keyid": KEY.keyid}]), "malformed"),
    (
        "signature-null-keyid",
        _envelope(b"{}", signatures=[{"keyid": None, "sig": ""}]),
        "malformed",
    ),
    (
        "signature-short",
        _envelope(b"{}", signatures=[{"keyid": KEY.keyid, "sig": "AAAA"}]),
        "bad_signature",
    ),
    (
        "signature-empty",
        _envelope(b"{}", signatures=[{"keyid": KEY.keyid, "sig": ""}]),
        "bad_signature",
    ),
    ("signature-wrong", _envelope(b"{}"), "bad_signature"),
    ("other-type", _envelope(b"{}", payloadType="application/json"), "wrong_payload_type"),
    (
        "unknown-key",
        _envelope(b"{}", signatures=[{"keyid": "00" * 32, "sig": "AAAA"}]),
        "untrusted_key",
    ),
]


@pytest.mark.parametrize(("name", "data", "code"), ENVELOPES, ids=[c[0] for c in ENVELOPES])
def test_hostile_envelope_bytes(name: str, data: bytes, code: str) -> None:
    def parse_and_verify() -> None:
        env = Envelope.from_json(data)
        verify_manifest(env, publisher_keys={KEY.keyid: KEY.public}, now=NOW)

    with pytest.raises(OstracaError) as info:
        parse_and_verify()
    assert info.value.code == code, f"{name}: {info.value}"


def _signed(payload: bytes, payload_type: str = MANIFEST_T) -> Envelope:
    return sign_envelope(payload_type, payload, [KEY])


# (name, payload bytes, expected code): correctly signed payloads that must still be refused.
PAYLOADS: list[tuple[str, bytes, str]] = [
    ("empty", b"", "malformed"),
    ("object-empty", b"{}", "malformed"),
    ("array", b"[]", "malformed"),
    ("string", b'"x"', "malformed"),
    ("latin1", b'{"a":"\xe9"}', "malformed"),
    ("overlong-utf8", b'{"a":"\xc0\xaf"}', "malformed"),
    ("utf8-surrogate-bytes", b'{"a":"\xed\xa0\x80"}', "malformed"),
    ("escaped-lone-surrogate", b'{"a":"\\udc00"}', "malformed"),
    ("raw-control-char", b'{"a":"\x01"}', "malformed"),
    ("bom", b"\xef\xbb\xbf{}", "malformed"),
    ("int-2^53", b'{"a":9007199254740992}', "malformed"),
    ("int-minus-2^53", b'{"a":-9007199254740992}', "malformed"),
    ("int-leading-zero", b'{"a":01}', "malformed"),
    ("int-plus", b'{"a":+1}', "malformed"),
    ("minus-zero", b'{"a":-0}', "non_canonical"),
    ("exponent", b'{"a":1e2}', "non_canonical"),
    ("infinity", b'{"a":Infinity}', "non_canonical"),
    ("space", b'{"a": 1}', "non_canonical"),
    ("order", b'{"b":1,"a":1}', "non_canonical"),
    ("escaped-slash", b'{"a":"\\/"}', "non_canonical"),
    ("uppercase-escape", b'{"a":"\\u001F"}', "non_canonical"),
    ("escaped-ascii", b'{"a":"\\u0041"}', "non_canonical"),
    ("escaped-del", b'{"a":"\\u007f"}', "non_canonical"),
    ("nested-duplicate", b'{"a":{"b":1,"b":1}}', "non_canonical"),
    ("trailing-garbage", b'{"a":1}x', "malformed"),
    ("deep", b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "malformed"),
]


@pytest.mark.parametrize(("name", "payload", "code"), PAYLOADS, ids=[c[0] for c in PAYLOADS])
def test_hostile_payloads(name: str, payload: bytes, code: str) -> None:
    with pytest.raises(OstracaError) as info:
        verify_manifest(_signed(payload), publisher_keys={KEY.keyid: KEY.public}, now=NOW)
    assert info.value.code == code, f"{name}: {info.value}"


# (name, call, expected code): other entry points that take untrusted values.
def _statement(model: type[Any], obj: Any) -> Callable[[], object]:
    return lambda: model.from_json_obj(obj)


def _pem(data: bytes, passphrase: bytes | None = None) -> Callable[[], object]:
    return lambda: SigningKey.from_pem(data, passphrase)


RSA_PEM = (
    b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
    b"-----END PUBLIC KEY-----\n"
)
CALLS: list[tuple[str, Callable[[], object], str]] = [
    ("verify-key-short", lambda: VerifyKey(b"\x00" * 31), "malformed"),
    ("verify-key-b64-garbage", lambda: VerifyKey.from_b64("not base64!"), "malformed"),
    (
        "verify-key-b64-long",
        lambda: VerifyKey.from_b64(base64.b64encode(b"\x00" * 33).decode()),
        "malformed",
    ),
    ("seed-short", lambda: SigningKey.from_seed(b"\x00" * 31), "malformed"),
    (
        "pem-garbage",
        _pem(b"-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----\n"),
        "malformed",
    ),
    ("pem-empty", _pem(b""), "malformed"),
    ("pem-public-key", _pem(RSA_PEM), "malformed"),
    ("pem-encrypted-no-pass", _pem(KEY.to_pem(b"secret")), "malformed"),
    ("pem-wrong-pass", _pem(KEY.to_pem(b"secret"), b"wrong"), "malformed"),
    ("pem-plain-with-pass", _pem(KEY.to_pem(), b"secret"), "malformed"),
    ("login-nonce-short", lambda: login_message("ab"), "malformed"),
    ("login-nonce-newline", lambda: login_message("a" * 64 + "\n"), "malformed"),
    ("login-nonce-upper", lambda: login_message("A" * 64), "malformed"),
    (
        "register-surrogate",
        lambda: registration_message(public_key="\ud800", name="", kind="", affiliation=""),
        "malformed",
    ),
    ("dataset-newline", lambda: split_dataset("acme/books\n"), "malformed"),
    ("dataset-dotdot", lambda: split_dataset("acme/a..b"), "malformed"),
    ("dataset-slash", lambda: split_dataset("acme/books/x"), "malformed"),
    ("dataset-absolute", lambda: split_dataset("/etc/passwd"), "malformed"),
    ("dataset-backslash", lambda: split_dataset("acme\\books"), "malformed"),
    ("statement-not-dict", _statement(DatasetManifest, []), "malformed"),
    ("statement-empty", _statement(AccessGrant, {}), "malformed"),
    ("grant-columns-duplicate", _statement(AccessGrant, {"columns": ["a", "a"]}), "malformed"),
    (
        "rotation-to-itself",
        _statement(
            KeyRotation,
            {
                "old_key": KEY.keyid,
                "new_key": PublicKey.from_verify_key(KEY.public).model_dump(),
                "created": "2024-01-01T00:00:00Z",
            },
        ),
        "malformed",
    ),
    (
        "public-key-bad-b64",
        _statement(
            KeyRotation,
            {
                "old_key": KEY.keyid,
                "new_key": {"keyid": "00" * 32, "public": "!" * 44},
                "created": "2024-01-01T00:00:00Z",
            },
        ),
        "malformed",
    ),
    (
        "attestation-float",
        _statement(TrainingAttestation, {"architecture": {"lr": 0.1}}),
        "malformed",
    ),
    ("parse-strict-huge-int", lambda: parse_strict(b"1" * 5000), "malformed"),
    (
        "parse-canonical-huge-int",
        lambda: parse_canonical(b'{"a":' + b"1" * 5000 + b"}"),
        "malformed",
    ),
    ("canonical-bytes-set", lambda: canonical_bytes({1, 2}), "malformed"),
    ("canonical-bytes-nan", lambda: canonical_bytes(float("nan")), "malformed"),
    ("canonical-bytes-int-key", lambda: canonical_bytes({1: 2}), "malformed"),
    ("canonical-bytes-big-int", lambda: canonical_bytes([2**53]), "malformed"),
]


@pytest.mark.parametrize(("name", "call", "code"), CALLS, ids=[c[0] for c in CALLS])
def test_hostile_values(name: str, call: Callable[[], object], code: str) -> None:
    with pytest.raises(OstracaError) as info:
        call()
    assert info.value.code == code, f"{name}: {info.value}"
