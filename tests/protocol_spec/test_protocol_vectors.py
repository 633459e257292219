"""The reference implementation against the committed vectors, and the vectors against their
generator (byte for byte)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ostraca.protocol_spec import OstracaError, canonical_bytes, pae, sha256_hex
from ostraca.protocol_spec.auth import login_message, registration_message
from ostraca.protocol_spec.errors import ERRORS_BY_CODE

from .vector_runner import VECTORS, load, run

ROOT = Path(__file__).resolve().parents[2]
POSITIVE = load("positive.json")["vectors"]
NEGATIVE = load("negative.json")["vectors"]


@pytest.mark.parametrize("vector", POSITIVE, ids=[v["name"] for v in POSITIVE])
def test_positive_vector_verifies(vector: dict[str, Any]) -> None:
    verified = run(vector)
    assert verified.digest == vector["expected"]["statement_id"]
    assert verified.signer.keyid == vector["expected"]["signer"]
    payload = vector["payload_text"].encode("utf-8")
    assert sha256_hex(payload) == vector["expected"]["statement_id"]
    assert sha256_hex(pae(vector["payload_type"], payload)) == vector["pae_sha256"]


@pytest.mark.parametrize("vector", NEGATIVE, ids=[v["name"] for v in NEGATIVE])
def test_negative_vector_fails_with_its_code(vector: dict[str, Any]) -> None:
    with pytest.raises(OstracaError) as info:
        run(vector)
    assert info.value.code == vector["expected"]["code"], str(info.value)


def test_vector_codes_are_known_and_cover_the_verification_codes() -> None:
    codes = {v["expected"]["code"] for v in NEGATIVE}
    assert codes <= set(ERRORS_BY_CODE)
    assert codes >= {
        "malformed",
        "non_canonical",
        "verification_failed",
        "bad_signature",
        "untrusted_key",
        "wrong_payload_type",
        "chain_broken",
        "rollback",
        "out_of_scope",
        "not_yet_valid",
        "expired",
        "revoked",
    }
    names = [v["name"] for v in POSITIVE + NEGATIVE]
    assert len(names) == len(set(names))


def test_positive_vectors_cover_every_statement_type() -> None:
    checks = {v["inputs"]["check"] for v in POSITIVE}
    assert checks == {"manifest", "grant", "revocation", "request", "key_rotation", "attestation"}


def test_canonical_and_auth_vectors() -> None:
    for v in load("canonical.json")["vectors"]:
        assert canonical_bytes(json.loads(v["value_json"])).hex() == v["canonical_utf8_hex"]
    for v in load("auth.json")["vectors"]:
        if v["name"] == "login":
            message = login_message(v["nonce"])
        else:
            message = registration_message(**v["profile"])
        assert message.hex() == v["message_hex"]


def test_generator_reproduces_committed_vectors_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_vectors.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # Other generators (merkle, log, encryption) write their own files into the same folder.
    generated = sorted(p.name for p in tmp_path.glob("*.json"))
    assert {"positive.json", "negative.json", "keys.json"} <= set(generated)
    for name in generated:
        assert (tmp_path / name).read_bytes() == (VECTORS / name).read_bytes(), name
