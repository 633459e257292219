"""Dataset cards and deprecations (SPEC.md 5.8, 5.9) against ``vectors/cards.json``, and that
file against its generator, byte for byte."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ostraca.protocol_spec import Envelope, OstracaError, Statement, pae, sha256_hex
from ostraca.protocol_spec.cards import CardHead, verify_card, verify_deprecation
from ostraca.protocol_spec.verify import ChainHead, Verified

from .vector_runner import VECTORS, keys_by_id, load

ROOT = Path(__file__).resolve().parents[2]
VECTORS_ = load("cards.json")["vectors"]
VALID = [v for v in VECTORS_ if v["expected"]["valid"]]
INVALID = [v for v in VECTORS_ if not v["expected"]["valid"]]


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def run(vector: dict[str, Any]) -> Verified[Any]:
    inp = vector["inputs"]
    keys = keys_by_id()
    trusted = {kid: keys[kid] for kid in inp["trusted_keys"]}
    retired = {r["keyid"]: (keys[r["keyid"]], _time(r["until"])) for r in inp["retired"]}
    env = Envelope.from_json(vector["envelope"].encode("utf-8"))
    now = _time(inp["now"])
    if inp["check"] == "card":
        head = inp["previous_card"]
        return verify_card(
            env,
            publisher_keys=trusted,
            retired=retired,
            now=now,
            dataset=inp["dataset"],
            previous=None if head is None else CardHead(head["sequence"], head["digest"]),
        )
    assert inp["check"] == "deprecation"
    m = inp["manifest"]
    return verify_deprecation(
        env,
        publisher_keys=trusted,
        retired=retired,
        now=now,
        dataset=inp["dataset"],
        manifest=None if m is None else ChainHead(inp["dataset"], m["version"], m["digest"]),
    )


@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_valid_vector_verifies(vector: dict[str, Any]) -> None:
    verified = run(vector)
    assert isinstance(verified.statement, Statement)
    assert verified.digest == vector["expected"]["statement_id"]
    assert verified.signer.keyid == vector["expected"]["signer"]
    payload = vector["payload_text"].encode("utf-8")
    assert sha256_hex(payload) == vector["expected"]["statement_id"]
    assert sha256_hex(pae(vector["payload_type"], payload)) == vector["pae_sha256"]


@pytest.mark.parametrize("vector", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_vector_fails_with_its_code(vector: dict[str, Any]) -> None:
    with pytest.raises(OstracaError) as info:
        run(vector)
    assert info.value.code == vector["expected"]["code"], str(info.value)


def test_the_vectors_cover_both_statements_and_every_check() -> None:
    assert {v["inputs"]["check"] for v in VALID} == {"card", "deprecation"}
    codes = {v["expected"]["code"] for v in INVALID}
    assert codes == {
        "malformed",
        "non_canonical",
        "wrong_payload_type",
        "untrusted_key",
        "out_of_scope",
        "verification_failed",
        "rollback",
        "chain_broken",
    }
    names = [v["name"] for v in VECTORS_]
    assert len(names) == len(set(names))


def test_generator_reproduces_the_committed_file(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_card_vectors.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert (tmp_path / "cards.json").read_bytes() == (VECTORS / "cards.json").read_bytes()


@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_valid_vectors_check_out_without_ostraca(vector: dict[str, Any]) -> None:
    """From SPEC.md's text alone (2.1, 4, 3.7, 3.8), with ``cryptography`` and ``rfc8785``: the
    payload is canonical, the first signature by a trusted key verifies over the PAE, and the
    statement names its signer."""
    envelope = json.loads(vector["envelope"])
    payload = base64.b64decode(envelope["payload"], validate=True)
    statement = json.loads(payload)
    assert rfc8785.dumps(statement) == payload
    kind = envelope["payloadType"]
    message = b"DSSEv1 %d %s %d %s" % (len(kind), kind.encode(), len(payload), payload)
    keys = {k["keyid"]: k["public_hex"] for k in load("keys.json")["keys"].values()}
    inp = vector["inputs"]
    trusted = set(inp["trusted_keys"]) | {r["keyid"] for r in inp["retired"]}
    first = next(s for s in envelope["signatures"] if s["keyid"] in trusted)
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(keys[first["keyid"]]))
    public.verify(base64.b64decode(first["sig"]), message)
    assert statement["publisher"] == first["keyid"] == vector["expected"]["signer"]
    assert statement["dataset"] == inp["dataset"]
