"""Run one protocol test vector through ``ostraca.protocol_spec`` (SPEC.md section 10)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ostraca.protocol_spec import (
    DatasetManifest,
    Envelope,
    Verified,
    VerifyKey,
    verify_attestation,
    verify_grant,
    verify_key_rotation,
    verify_manifest,
    verify_request,
    verify_revocation,
)
from ostraca.protocol_spec.models import Statement

VECTORS = Path(__file__).resolve().parents[2] / "protocol_spec" / "vectors"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="ascii"))
    return data


def keys_by_id() -> dict[str, VerifyKey]:
    return {
        k["keyid"]: VerifyKey(bytes.fromhex(k["public_hex"]))
        for k in load("keys.json")["keys"].values()
    }


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _env(text: str) -> Envelope:
    return Envelope.from_json(text.encode("utf-8"))


def run(vector: dict[str, Any]) -> Verified[Statement]:
    """Verify ``vector``'s envelope with its inputs; raise what verification raises."""
    inp = vector["inputs"]
    keys = keys_by_id()
    trusted = {kid: keys[kid] for kid in inp["trusted_keys"]}
    now = _time(inp["now"])
    chain: Verified[DatasetManifest] | None = None
    for text in inp["previous"]:
        chain = verify_manifest(_env(text), publisher_keys=trusted, now=now, previous=chain)
    check = inp["check"]
    if check == "manifest":
        env = _env(vector["envelope"])
        return verify_manifest(  # type: ignore[return-value]
            env, publisher_keys=trusted, now=now, dataset=inp["dataset"], previous=chain
        )
    if check == "grant":
        manifest = verify_manifest(
            _env(inp["manifest"]), publisher_keys=trusted, now=now, previous=chain
        )
        return verify_grant(  # type: ignore[return-value]
            _env(vector["envelope"]),
            manifest=manifest,
            grantee=inp["grantee"],
            now=now,
            revoked=set(inp["revoked"]),
            columns=inp["columns"],
        )
    (key,) = trusted.values() if trusted else (None,)
    if key is None:
        raise AssertionError("this check needs exactly one trusted key")
    env = _env(vector["envelope"])
    if check == "revocation":
        return verify_revocation(env, publisher_key=key, now=now)  # type: ignore[return-value]
    if check == "request":
        stmt = None
        if inp["manifest"] is not None:
            m_env = _env(inp["manifest"])
            stmt = DatasetManifest.from_json_obj(json.loads(m_env.payload))
        return verify_request(env, requester_key=key, now=now, manifest=stmt)  # type: ignore[return-value]
    if check == "key_rotation":
        return verify_key_rotation(env, old_key=key, now=now)  # type: ignore[return-value]
    if check == "attestation":
        return verify_attestation(  # type: ignore[return-value]
            env, trainer_key=key, now=now, checkpoint_sha256=inp["checkpoint_sha256"]
        )
    raise AssertionError(f"unknown check {check!r}")
