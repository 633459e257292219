from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from ostraca.protocol_spec import utc_now

from .conftest import World
from .server_helpers import (
    Identity,
    MovableClock,
    assert_problem,
    grant_access,
    login,
    new_identity,
    post_envelope,
    publish_dataset,
    request_access,
    revoke,
    sign_grant,
    sign_request,
    sign_revocation,
)


def _blob(client: TestClient, who: Identity, digest: str, **headers: str):  # type: ignore[no-untyped-def]
    return client.get(
        f"/v1/datasets/acme/books/blobs/sha256:{digest}", headers={**who.headers, **headers}
    )


def test_request_grant_and_read(client: TestClient, world: World) -> None:
    req = client.get(f"/v1/requests/{world.request_id}", headers=world.owner.headers).json()
    assert req["status"] == "granted"
    assert req["grant_id"] == world.grant_id
    assert req["requester"]["keyid"] == world.granted.keyid
    inbox = client.get("/v1/requests?status=granted", headers=world.owner.headers).json()
    assert [i["request_id"] for i in inbox["items"]] == [world.request_id]
    grants = client.get("/v1/grants", headers=world.granted.headers).json()["items"]
    assert [g["grant_id"] for g in grants] == [world.grant_id]
    assert grants[0]["revoked"] is False
    assert grants[0]["grantee"] == world.granted.keyid

    shard = world.built.blobs[world.shard]
    r = _blob(client, world.granted, world.shard)
    assert r.status_code == 200
    assert r.content == shard
    assert r.headers["etag"] == f'"sha256:{world.shard}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["cache-control"] == "private, max-age=31536000, immutable"
    r = _blob(client, world.granted, world.shard, Range="bytes=10-99")
    assert r.status_code == 206
    assert r.content == shard[10:100]
    assert r.headers["content-range"] == f"bytes 10-99/{len(shard)}"
    r = _blob(client, world.granted, world.shard, Range="bytes=-5")
    assert r.content == shard[-5:]
    r = _blob(client, world.granted, world.shard, Range=f"bytes={len(shard)}-")
    assert_problem(r, 416, "range_not_satisfiable")
    assert r.headers["content-range"] == f"bytes */{len(shard)}"
    r = _blob(client, world.granted, world.shard, **{"If-None-Match": f'"sha256:{world.shard}"'})
    assert r.status_code == 304
    head = client.head(
        f"/v1/datasets/acme/books/blobs/sha256:{world.shard}", headers=world.granted.headers
    )
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(shard))


def test_revocation_refuses_the_next_byte(client: TestClient, world: World) -> None:
    assert _blob(client, world.granted, world.shard, Range="bytes=0-9").status_code == 206
    revoke(client, world.owner, world.dataset, world.grant_id)
    r = _blob(client, world.granted, world.shard, Range="bytes=10-19")
    assert_problem(r, 403, "revoked")
    grant = client.get(f"/v1/grants/{world.grant_id}", headers=world.granted.headers).json()
    assert grant["revoked"] is True
    assert grant["revocation"]["payloadType"] == "application/vnd.ostraca.revocation+json"
    again = sign_revocation(world.owner, world.dataset, world.grant_id)
    assert_problem(post_envelope(client, "/v1/revocations", world.owner, again), 409, "conflict")
    # The publisher still reads its own data.
    assert _blob(client, world.owner, world.shard).status_code == 200


def test_expired_and_not_yet_valid_grants(
    client: TestClient, world: World, clock: MovableClock
) -> None:
    late = new_identity(client, "researcher", "Lee Later")
    now = utc_now()
    grant_access(
        client,
        world.owner,
        late,
        world.dataset,
        not_before=now + timedelta(days=1),
        expires=now + timedelta(days=2),
    )
    assert_problem(_blob(client, late, world.shard), 403, "not_yet_valid")
    clock.advance(3 * 86400)
    late.token = login(client, late.key)["token"]
    assert_problem(_blob(client, late, world.shard), 403, "expired")


def test_grant_scope_by_version(client: TestClient, world: World) -> None:
    v2 = publish_dataset(
        client,
        world.owner,
        world.dataset,
        version=2,
        previous=world.built.digest,
        create_namespace=False,
        seed=5,
    )
    only_v1 = new_identity(client, "researcher", "Vera Version")
    grant_access(client, world.owner, only_v1, world.dataset, max_version=1)
    assert _blob(client, only_v1, world.shard).status_code == 200
    assert_problem(_blob(client, only_v1, v2.manifest.shards[0].sha256), 403, "out_of_scope")


def test_read_without_grant(client: TestClient, world: World) -> None:
    r = _blob(client, world.ungranted, world.shard)
    body = assert_problem(r, 403, "access_denied")
    assert body["hint"].startswith("ostraca request acme/books")
    assert_problem(
        client.get(f"/v1/datasets/acme/books/blobs/sha256:{world.shard}"), 401, "unauthenticated"
    )
    assert_problem(_blob(client, world.granted, "0" * 64), 404, "not_found")


def test_request_must_accept_current_terms(client: TestClient, world: World) -> None:
    r = post_envelope(
        client,
        "/v1/requests",
        world.ungranted,
        sign_request(world.ungranted, world.dataset, terms="other terms"),
    )
    assert_problem(r, 403, "out_of_scope")
    # Signed by someone else than the caller.
    r = post_envelope(
        client, "/v1/requests", world.ungranted, sign_request(world.granted, world.dataset)
    )
    assert_problem(r, 422, "untrusted_key")
    r = post_envelope(
        client, "/v1/requests", world.ungranted, sign_request(world.ungranted, "acme/nothing")
    )
    assert_problem(r, 404, "not_found")
    items = client.get("/v1/requests", headers=world.ungranted.headers).json()["items"]
    assert items == []


def test_deny(client: TestClient, world: World) -> None:
    request_id = request_access(client, world.ungranted, world.dataset)
    r = client.post(
        f"/v1/requests/{request_id}/deny", json={"reason": "no"}, headers=world.ungranted.headers
    )
    assert_problem(r, 403, "access_denied")
    r = client.post(
        f"/v1/requests/{request_id}/deny", json={"reason": "no"}, headers=world.owner.headers
    )
    assert r.status_code == 200
    assert r.json()["status"] == "denied"
    assert r.json()["reason"] == "no"
    r = client.post(f"/v1/requests/{request_id}/deny", json={}, headers=world.owner.headers)
    assert_problem(r, 409, "conflict")
    # A grant cannot answer a decided request.
    env = sign_grant(world.owner, world.ungranted.keyid, world.dataset, request=request_id)
    assert_problem(post_envelope(client, "/v1/grants", world.owner, env), 409, "conflict")
    mine = client.get(f"/v1/requests/{request_id}", headers=world.ungranted.headers).json()
    assert mine["status"] == "denied"


def test_grant_checks(client: TestClient, world: World) -> None:
    # Signed by another institution's key, posted by the owner.
    forged = sign_grant(world.other_institution, world.ungranted.keyid, world.dataset)
    assert_problem(post_envelope(client, "/v1/grants", world.owner, forged), 422, "untrusted_key")
    # Posted by another institution.
    env = sign_grant(world.owner, world.ungranted.keyid, world.dataset)
    r = post_envelope(client, "/v1/grants", world.other_institution, env)
    assert_problem(r, 403, "access_denied")
    # Grantee not registered.
    env = sign_grant(world.owner, "ab" * 32, world.dataset)
    assert_problem(
        post_envelope(client, "/v1/grants", world.owner, env), 422, "verification_failed"
    )
    # A request by someone else than the grantee.
    env = sign_grant(world.owner, world.ungranted.keyid, world.dataset, request=world.request_id)
    r = post_envelope(client, "/v1/grants", world.owner, env)
    assert_problem(r, 422, "verification_failed")
    assert client.get("/v1/grants", headers=world.ungranted.headers).json()["items"] == []
    assert_problem(_blob(client, world.ungranted, world.shard), 403, "access_denied")


def test_revocation_checks(client: TestClient, world: World) -> None:
    env = sign_revocation(world.other_institution, world.dataset, world.grant_id)
    r = post_envelope(client, "/v1/revocations", world.other_institution, env)
    assert_problem(r, 403, "access_denied")
    env = sign_revocation(world.owner, world.dataset, "cd" * 32)
    assert_problem(post_envelope(client, "/v1/revocations", world.owner, env), 404, "not_found")
    assert _blob(client, world.granted, world.shard).status_code == 200


def test_audit_log(client: TestClient, world: World) -> None:
    _blob(client, world.granted, world.shard, Range="bytes=0-9")
    _blob(client, world.ungranted, world.shard)
    revoke(client, world.owner, world.dataset, world.grant_id)
    _blob(client, world.granted, world.shard)
    r = client.get("/v1/datasets/acme/books/audit", headers=world.owner.headers)
    events = r.json()["items"]
    assert [e["action"] for e in events] == [
        "publish",
        "request",
        "grant",
        "read",
        "read_refused",
        "revoke",
        "read_refused",
    ]
    read = events[3]
    assert read["principal"] == world.granted.keyid
    assert read["grant_id"] == world.grant_id
    assert read["version"] == 1
    assert read["detail"].endswith(f"bytes 0-9/{len(world.built.blobs[world.shard])}")
    assert "revoked" in events[6]["detail"]
    page = client.get(
        f"/v1/datasets/acme/books/audit?after={events[2]['id']}&limit=2",
        headers=world.owner.headers,
    ).json()["items"]
    assert [e["id"] for e in page] == [events[3]["id"], events[4]["id"]]
    for who in (world.granted, world.other_institution):
        r = client.get("/v1/datasets/acme/books/audit", headers=who.headers)
        assert_problem(r, 403, "access_denied")
