"""Key rotation through the registry: accepted only when signed by the active key and the new one;
afterwards the old key verifies what it signed before and signs nothing new. Both backends."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path
from typing import Any

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from ostraca.protocol_spec import (
    Envelope,
    KeyRotation,
    PublicKey,
    SigningKey,
    sign_statement,
    utc_now,
    verify_key_rotation,
    verify_manifest,
)
from ostraca.protocol_spec.auth import login_message
from ostraca.server.app import create_app
from ostraca.server.migrate import (
    alembic_config,
    check_drift,
    current_revision,
    downgrade_to_base,
    head_revision,
    upgrade_to_head,
)
from ostraca.server.settings import Settings

from .conftest import World
from .server_helpers import (
    Identity,
    MovableClock,
    arrow_shard,
    build_manifest,
    login,
    new_identity,
    post_envelope,
    publish,
    registration_body,
    sign_grant,
    sign_request,
    sign_revocation,
    upload_blob,
)
from .server_helpers import assert_problem as problem


def rotation(
    old: SigningKey,
    new: SigningKey,
    *,
    signers: list[SigningKey] | None = None,
    reason: str = "scheduled rotation",
) -> bytes:
    statement = KeyRotation(
        old_key=old.keyid,
        new_key=PublicKey.from_verify_key(new.public),
        reason=reason,
        created=utc_now(),
    )
    return sign_statement(statement, signers if signers is not None else [old, new]).to_json()


def submit(client: TestClient, keyid: str, body: bytes) -> Any:
    return client.post(
        f"/v1/principals/{keyid}/rotations",
        content=body,
        headers={"Content-Type": "application/json"},
    )


def rotate(client: TestClient, who: Identity, new: SigningKey) -> Identity:
    """Rotate ``who`` to ``new`` and log the new key in."""
    r = submit(client, who.keyid, rotation(who.key, new))
    assert r.status_code == 201, r.text
    token = login(client, new)
    return Identity(key=new, name=who.name, kind=who.kind, token=token["token"])


def namespace_keys(client: TestClient, ns: str) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = client.get(f"/v1/namespaces/{ns}").json()["keys"]
    return keys


def test_rotation_is_accepted_and_published(client: TestClient, world: World) -> None:
    owner, new = world.owner, SigningKey.generate()
    body = rotation(owner.key, new)
    r = submit(client, owner.keyid, body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["principal"] == owner.keyid
    assert out["old_key"] == owner.keyid
    assert out["new_key"] == {"keyid": new.keyid, "algorithm": "ed25519", "public": new.public.b64}
    assert out["reason"] == "scheduled rotation"
    assert out["rotation_id"] == Envelope.from_json(body).digest
    # The namespace lists both keys: the new one active, the old one rotated (it still verifies
    # the versions it signed), old clients read each entry as a PublicKey.
    keys = namespace_keys(client, "acme")
    assert [(k["keyid"], k["status"]) for k in keys] == [
        (new.keyid, "active"),
        (owner.keyid, "rotated"),
    ]
    assert keys[1]["successor"] == new.keyid
    assert keys[1]["rotated"] is not None
    for k in keys:
        assert PublicKey(keyid=k["keyid"], public=k["public"]).keyid == k["keyid"]
    # The principal keeps its stable id; any of its keys finds it.
    for keyid in (owner.keyid, new.keyid):
        p = client.get(f"/v1/principals/{keyid}").json()
        assert p["keyid"] == owner.keyid
        assert p["keys"] == [{"keyid": new.keyid, "algorithm": "ed25519", "public": new.public.b64}]
        assert [k["keyid"] for k in p["rotated_keys"]] == [owner.keyid]
    # The chain is public, and served byte for byte as an envelope that verifies with the old key.
    chain = client.get(f"/v1/principals/{new.keyid}/rotations").json()
    assert chain["principal"] == owner.keyid
    assert chain["active_key"] == new.keyid
    assert len(chain["items"]) == 1
    env = Envelope.from_dict(chain["items"][0]["envelope"])
    assert env.to_json() == Envelope.from_json(body).to_json()
    assert (
        verify_key_rotation(env, old_key=owner.key.public, now=utc_now()).digest
        == (out["rotation_id"])
    )
    # Every token of the principal is revoked; the old key can no longer log in; the new can.
    assert problem(client.get("/v1/whoami", headers=owner.headers), 401, "unauthenticated")
    nonce = client.post("/v1/auth/challenge", json={"keyid": owner.keyid}).json()["nonce"]
    sig = base64.b64encode(owner.key.sign(login_message(nonce))).decode()
    refused = client.post(
        "/v1/auth/token", json={"keyid": owner.keyid, "nonce": nonce, "signature": sig}
    )
    assert "rotated" in problem(refused, 401, "unauthenticated")["detail"]
    token = login(client, new)
    assert token["principal"]["keyid"] == owner.keyid
    who = client.get("/v1/whoami", headers={"Authorization": f"Bearer {token['token']}"})
    assert who.json()["keyid"] == owner.keyid
    # Audited, in the publisher's dataset log as well.
    audit = client.get(
        "/v1/datasets/acme/books/audit", headers={"Authorization": f"Bearer {token['token']}"}
    ).json()["items"]
    rotations = [e for e in audit if e["action"] == "rotate_key"]
    assert len(rotations) == 1
    assert rotations[0]["principal"] == owner.keyid
    assert out["rotation_id"] in rotations[0]["detail"]
    assert new.keyid in rotations[0]["detail"]
    # The researcher's grant (signed by the old key before the rotation) still reads bytes.
    r = client.get(
        f"/v1/datasets/acme/books/blobs/sha256:{world.shard}", headers=world.granted.headers
    )
    assert r.status_code == 200, r.text
    assert r.content == world.built.blobs[world.shard]


def test_rotation_needs_both_signatures(client: TestClient, institution: Identity) -> None:
    new = SigningKey.generate()
    # Signed by the old key only: no proof of possession of the new key (K6).
    only_old = rotation(institution.key, new, signers=[institution.key])
    problem(submit(client, institution.keyid, only_old), 422, "bad_signature")
    # Signed by the new key only: the principal's key never agreed (K2).
    only_new = rotation(institution.key, new, signers=[new])
    problem(submit(client, institution.keyid, only_new), 422, "untrusted_key")
    # Signed by the right keys but tampered with: the signatures no longer verify.
    good = Envelope.from_json(rotation(institution.key, new))
    forged = Envelope(
        payload_type=good.payload_type,
        payload=good.payload.replace(b"scheduled", b"scheduling"),
        signatures=good.signatures,
    )
    problem(submit(client, institution.keyid, forged.to_json()), 422, "bad_signature")
    # A rotation of someone else's key, filed under this principal.
    other = SigningKey.generate()
    problem(submit(client, institution.keyid, rotation(other, new)), 422, "untrusted_key")
    # Another statement type.
    grant = sign_grant(institution, institution.keyid, "acme/books")
    problem(submit(client, institution.keyid, grant), 422, "wrong_payload_type")
    # Unknown principal.
    problem(submit(client, other.keyid, rotation(other, new)), 404, "not_found")
    # Nothing changed.
    p = client.get(f"/v1/principals/{institution.keyid}").json()
    assert [k["keyid"] for k in p["keys"]] == [institution.keyid]
    assert p["rotated_keys"] == []
    assert client.get("/v1/whoami", headers=institution.headers).status_code == 200
    chain = client.get(f"/v1/principals/{institution.keyid}/rotations").json()
    assert chain == {"principal": institution.keyid, "active_key": institution.keyid, "items": []}


def test_new_key_must_be_fresh(
    client: TestClient, institution: Identity, researcher: Identity
) -> None:
    # The new key belongs to another principal (signed with it, so proof of possession holds).
    r = submit(client, institution.keyid, rotation(institution.key, researcher.key))
    assert researcher.keyid in problem(r, 409, "conflict")["detail"]
    # Rotating to a fresh key, then replaying the same rotation, then rotating from the old key
    # again (a fork of the chain): conflicts.
    b, c = SigningKey.generate(), SigningKey.generate()
    body = rotation(institution.key, b)
    assert submit(client, institution.keyid, body).status_code == 201
    problem(submit(client, institution.keyid, body), 409, "conflict")
    problem(submit(client, institution.keyid, rotation(institution.key, c)), 409, "conflict")
    # Rotating back to the old key: it is registered (as a rotated key) → conflict.
    problem(submit(client, b.keyid, rotation(b, institution.key)), 409, "conflict")
    # A later key that registers on its own is not free either.
    assert (
        client.post(
            "/v1/principals", json=registration_body(b, name="Copycat", kind="researcher")
        ).status_code
        == 409
    )
    # The chain continues from the active key.
    assert submit(client, b.keyid, rotation(b, c)).status_code == 201
    chain = client.get(f"/v1/principals/{institution.keyid}/rotations").json()
    assert chain["active_key"] == c.keyid
    assert [(i["old_key"], i["new_key"]["keyid"]) for i in chain["items"]] == [
        (institution.keyid, b.keyid),
        (b.keyid, c.keyid),
    ]
    keys = namespace_keys_of(client, institution.keyid)
    assert keys == [(c.keyid, "active"), (b.keyid, "rotated"), (institution.keyid, "rotated")]


def namespace_keys_of(client: TestClient, keyid: str) -> list[tuple[str, str]]:
    p = client.get(f"/v1/principals/{keyid}").json()
    return [(k["keyid"], "active") for k in p["keys"]] + [
        (k["keyid"], k["status"]) for k in p["rotated_keys"]
    ]


def test_rotated_key_signs_nothing_new(client: TestClient, world: World) -> None:
    owner = world.owner
    new_owner = rotate(client, owner, SigningKey.generate())
    # A new version signed by the rotated key (uploaded and sent with the new key's token).
    data = [arrow_shard(50, seed=7)]
    stale = build_manifest(owner.key, "acme/books", data, version=2, previous=world.built.digest)
    for blob in stale.blobs.values():
        upload_blob(client, new_owner, blob)
    body = problem(publish(client, new_owner, stale), 422, "untrusted_key")
    assert "rotated" in body["detail"]
    assert "active key" in (body.get("hint") or "")
    # The same version signed by the active key: accepted, and it links to version 1.
    fresh = build_manifest(
        new_owner.key, "acme/books", data, version=2, previous=world.built.digest
    )
    r = publish(client, new_owner, fresh)
    assert r.status_code == 201, r.text
    # Old and new versions both verify with the keys the namespace lists.
    keys = {
        k["keyid"]: PublicKey(keyid=k["keyid"], public=k["public"]).to_verify_key()
        for k in namespace_keys(client, "acme")
    }
    v1 = client.get("/v1/datasets/acme/books/versions/1/manifest").content
    v2 = client.get("/v1/datasets/acme/books/versions/2/manifest").content
    assert v1 == world.built.envelope
    first = verify_manifest(Envelope.from_json(v1), publisher_keys=keys, now=utc_now())
    second = verify_manifest(
        Envelope.from_json(v2), publisher_keys=keys, now=utc_now(), previous=first
    )
    assert first.signer.keyid == owner.keyid
    assert second.signer.keyid == new_owner.keyid
    # Grants: by the rotated key refused, by the active key accepted.
    other = new_identity(client, "researcher", "Olga Other")
    refused = post_envelope(
        client, "/v1/grants", new_owner, sign_grant(owner, other.keyid, "acme/books")
    )
    assert "rotated" in problem(refused, 422, "untrusted_key")["detail"]
    r = post_envelope(
        client, "/v1/grants", new_owner, sign_grant(new_owner, other.keyid, "acme/books")
    )
    assert r.status_code == 201, r.text
    # A grant the old key issued is revoked with the new key (after a compromise: rotate, then
    # revoke what the old key granted); a revocation signed by the old key is refused.
    refused = post_envelope(
        client, "/v1/revocations", new_owner, sign_revocation(owner, "acme/books", world.grant_id)
    )
    problem(refused, 422, "untrusted_key")
    r = post_envelope(
        client,
        "/v1/revocations",
        new_owner,
        sign_revocation(new_owner, "acme/books", world.grant_id),
    )
    assert r.status_code == 201, r.text
    problem(
        client.get(
            f"/v1/datasets/acme/books/blobs/sha256:{world.shard}", headers=world.granted.headers
        ),
        403,
        "revoked",
    )


def test_researcher_rotation_and_requests(client: TestClient, world: World) -> None:
    """A researcher rotates too: its old grant stays its own, requests need the new key."""
    granted = world.granted
    new = rotate(client, granted, SigningKey.generate())
    r = client.get(f"/v1/datasets/acme/books/blobs/sha256:{world.shard}", headers=new.headers)
    assert r.status_code == 200, r.text
    grants = client.get("/v1/grants", headers=new.headers).json()["items"]
    assert [g["grant_id"] for g in grants] == [world.grant_id]
    refused = post_envelope(client, "/v1/requests", new, sign_request(granted, "acme/books"))
    assert "rotated" in problem(refused, 422, "untrusted_key")["detail"]
    filed = post_envelope(client, "/v1/requests", new, sign_request(new, "acme/books"))
    assert filed.status_code == 201, filed.text


def test_rotation_created_in_the_future_is_refused(
    client: TestClient, institution: Identity, clock: MovableClock
) -> None:
    new = SigningKey.generate()
    statement = KeyRotation(
        old_key=institution.keyid,
        new_key=PublicKey.from_verify_key(new.public),
        created=utc_now() + timedelta(hours=1),
    )
    body = sign_statement(statement, [institution.key, new]).to_json()
    problem(submit(client, institution.keyid, body), 422, "verification_failed")
    clock.advance(3600)
    assert submit(client, institution.keyid, body).status_code == 201


def test_migration_0002_up_down_up_keeps_keys_safe(empty_database_url: str, tmp_path: Path) -> None:
    url = empty_database_url
    upgrade_to_head(url)
    assert current_revision(url) == head_revision()
    assert check_drift(url) is None
    settings = Settings(
        data_dir=tmp_path / "data", database_url=url, storage_url=f"file://{tmp_path / 'blobs'}"
    )
    old, new = SigningKey.generate(), SigningKey.generate()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        r = client.post("/v1/principals", json=registration_body(old, name="A", kind="institution"))
        assert r.status_code == 201, r.text
        assert submit(client, old.keyid, rotation(old, new)).status_code == 201
    # Down to 0001: the chain columns go; the rotated key becomes a revoked key (it must not
    # look active to code that knows nothing of rotation); the new key stays.
    command.downgrade(alembic_config(url), "0001")
    assert current_revision(url) == "0001"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = {
                keyid: revoked is not None
                for keyid, revoked in conn.execute(
                    text("SELECT keyid, revoked FROM principal_keys")
                )
            }
    finally:
        engine.dispose()
    assert rows == {old.keyid: True, new.keyid: False}
    upgrade_to_head(url)
    assert check_drift(url) is None
    downgrade_to_base(url)
    assert current_revision(url) is None
    upgrade_to_head(url)
    assert current_revision(url) == head_revision()
    assert check_drift(url) is None
