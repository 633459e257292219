"""Encryption keys and key grants on the registry (ENCRYPTION.md 4.4): verified against the keys
of the principal they name, stored byte for byte, served to their grantee (not after a
revocation) and to the dataset's owner, never to anyone else."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ostraca.client.encryption import (
    encryption_key_envelope,
    identity_encryption_key,
    key_grant_envelope,
)
from ostraca.protocol_spec import Envelope, utc_now
from ostraca.protocol_spec.crypto import DataKey

from .conftest import World
from .server_helpers import Identity, assert_problem, post_envelope, revoke

KEYS = {1: {"default": DataKey(bytes(range(32)))}}


def register_key(client: TestClient, who: Identity) -> str:
    env = encryption_key_envelope(who.key, identity_encryption_key(who.key), created=utc_now())
    r = post_envelope(client, "/v1/encryption-keys", who, env.to_json())
    assert r.status_code == 201, r.text
    keyid: str = r.json()["keyid"]
    return keyid


def key_grant(world: World, grantee: Identity, *, grant: str | None, epoch: int = 0) -> bytes:
    return key_grant_envelope(
        world.owner.key,
        KEYS,
        dataset=world.dataset,
        grantee=grantee.keyid,
        recipient=identity_encryption_key(grantee.key, epoch).public,
        grant=grant,
        created=utc_now(),
    ).to_json()


def listed(client: TestClient, world: World, who: Identity) -> list[dict[str, object]]:
    r = client.get(f"/v1/datasets/{world.dataset}/key-grants", headers=who.headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()["items"]
    # The same ones come with the caller's grants when asked for (a reader's one round trip).
    params = {"dataset": world.dataset, "key_grants": "true"}
    r = client.get("/v1/grants", params=params, headers=who.headers)
    assert r.status_code == 200, r.text
    assert r.json()["key_grants"] == items
    return items


def test_encryption_key_registered_and_public(client: TestClient, researcher: Identity) -> None:
    keyid = register_key(client, researcher)
    r = client.get(f"/v1/principals/{researcher.keyid}/encryption-keys")
    assert r.status_code == 200
    (item,) = r.json()["items"]
    assert item["keyid"] == keyid
    assert item["owner"] == researcher.keyid
    again = encryption_key_envelope(
        researcher.key, identity_encryption_key(researcher.key), created=utc_now()
    )
    assert_problem(
        post_envelope(client, "/v1/encryption-keys", researcher, again.to_json()), 409, "conflict"
    )


def test_encryption_key_of_someone_else_is_refused(
    client: TestClient, researcher: Identity, institution: Identity
) -> None:
    env = encryption_key_envelope(
        researcher.key, identity_encryption_key(researcher.key), created=utc_now()
    )
    r = post_envelope(client, "/v1/encryption-keys", institution, env.to_json())
    assert_problem(r, 422, "untrusted_key")


def test_key_grants_flow_and_visibility(client: TestClient, world: World) -> None:
    register_key(client, world.owner)
    register_key(client, world.granted)
    escrow = key_grant(world, world.owner, grant=None)
    assert post_envelope(client, "/v1/key-grants", world.owner, escrow).status_code == 201
    mine = key_grant(world, world.granted, grant=world.grant_id)
    r = post_envelope(client, "/v1/key-grants", world.owner, mine)
    assert r.status_code == 201, r.text
    # Stored and served byte for byte.
    (served,) = listed(client, world, world.granted)
    assert Envelope.from_dict(served["envelope"]).to_json() == mine
    assert served["grant_id"] == world.grant_id
    assert len(listed(client, world, world.owner)) == 2
    assert listed(client, world, world.ungranted) == []
    # After the revocation the grantee's key grants are not served any more.
    revoke(client, world.owner, world.dataset, world.grant_id)
    assert listed(client, world, world.granted) == []


def test_key_grants_with_the_grants_need_a_dataset(client: TestClient, world: World) -> None:
    headers = world.granted.headers
    assert client.get("/v1/grants", headers=headers).json()["key_grants"] is None
    r = client.get("/v1/grants", params={"key_grants": "true"}, headers=headers)
    assert_problem(r, 422, "malformed")
    unknown = {"dataset": "acme/nothing", "key_grants": "true"}
    assert client.get("/v1/grants", params=unknown, headers=headers).json() == {
        "items": [],
        "key_grants": [],
    }


def test_key_grant_refusals(client: TestClient, world: World) -> None:
    register_key(client, world.granted)
    good = key_grant(world, world.granted, grant=world.grant_id)
    # Only the dataset's owner posts key grants.
    assert_problem(
        post_envelope(client, "/v1/key-grants", world.other_institution, good), 403, "access_denied"
    )
    # A grant id that is not a grant of this dataset to this grantee.
    wrong = key_grant(world, world.granted, grant="ab" * 32)
    assert_problem(
        post_envelope(client, "/v1/key-grants", world.owner, wrong), 422, "verification_failed"
    )
    # Wrapped to an encryption key the grantee never registered.
    unregistered = key_grant(world, world.granted, grant=world.grant_id, epoch=1)
    assert_problem(
        post_envelope(client, "/v1/key-grants", world.owner, unregistered),
        422,
        "verification_failed",
    )
