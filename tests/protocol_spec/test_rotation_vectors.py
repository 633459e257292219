"""Grants through the rotation chain (SPEC.md 5.2 G2) against ``vectors/rotation.json``: a
grant verifies when signed by the manifest's signer or by a key reached from it by verified key
rotations (5.5), link by link — and by no other key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ostraca.protocol_spec import (
    AccessGrant,
    Envelope,
    OstracaError,
    Verified,
    VerifyKey,
    sha256_hex,
    verify_grant,
    verify_key_rotation,
    verify_manifest,
)

from .vector_runner import keys_by_id, load

VECTORS = load("rotation.json")["vectors"]
POSITIVE = [v for v in VECTORS if v["expected"]["valid"]]
NEGATIVE = [v for v in VECTORS if not v["expected"]["valid"]]


def _env(text: str) -> Envelope:
    return Envelope.from_json(text.encode("utf-8"))


def run(vector: dict[str, Any]) -> Verified[AccessGrant]:
    """5.1 for the manifest, 5.5 for each rotation from the manifest's signer on (each link's
    old key is the previous link's new key), then 5.2 with those new keys as successors."""
    inp = vector["inputs"]
    keys = keys_by_id()
    now = datetime.strptime(inp["now"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    trusted = {kid: keys[kid] for kid in inp["trusted_keys"]}
    manifest = verify_manifest(_env(inp["manifest"]), publisher_keys=trusted, now=now)
    current = manifest.signer
    successors: dict[str, VerifyKey] = {}
    for text in inp["rotations"]:
        link = verify_key_rotation(_env(text), old_key=current, now=now)
        current = link.statement.new_key.to_verify_key()
        successors[current.keyid] = current
    return verify_grant(
        _env(vector["envelope"]),
        manifest=manifest,
        grantee=inp["grantee"],
        now=now,
        revoked=set(inp["revoked"]),
        columns=inp["columns"],
        successors=successors,
    )


@pytest.mark.parametrize("vector", POSITIVE, ids=[v["name"] for v in POSITIVE])
def test_a_grant_by_a_successor_verifies(vector: dict[str, Any]) -> None:
    verified = run(vector)
    assert verified.digest == vector["expected"]["statement_id"]
    assert verified.signer.keyid == vector["expected"]["signer"]
    assert sha256_hex(vector["payload_text"].encode("utf-8")) == verified.digest


@pytest.mark.parametrize("vector", NEGATIVE, ids=[v["name"] for v in NEGATIVE])
def test_a_grant_by_a_key_outside_the_chain_fails(vector: dict[str, Any]) -> None:
    with pytest.raises(OstracaError) as info:
        run(vector)
    assert info.value.code == vector["expected"]["code"], str(info.value)


def test_the_successor_grants_fail_without_the_chain() -> None:
    """Each positive vector by a successor is refused when its rotations are left out: the
    chain, not the grant, is what makes the key count."""
    by_successors = [v for v in POSITIVE if v["inputs"]["rotations"] and "signer" not in v["name"]]
    assert len(by_successors) == 2
    for vector in by_successors:
        alone = {**vector, "inputs": {**vector["inputs"], "rotations": []}}
        with pytest.raises(OstracaError) as info:
            run(alone)
        assert info.value.code == "untrusted_key"
