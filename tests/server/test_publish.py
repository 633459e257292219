from __future__ import annotations

import asyncio
import base64
import json

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ostraca.protocol_spec import SigningKey, sign_statement

from .server_helpers import (
    Built,
    Identity,
    arrow_shard,
    assert_problem,
    build_manifest,
    new_identity,
    publish,
    publish_dataset,
    upload_blob,
)


def _namespace(client: TestClient, who: Identity, name: str = "acme") -> None:
    r = client.post("/v1/namespaces", json={"name": name}, headers=who.headers)
    assert r.status_code == 201, r.text


def _upload_all(client: TestClient, who: Identity, built: Built) -> None:
    for data in built.blobs.values():
        upload_blob(client, who, data)


def _unchanged(client: TestClient, dataset: str = "acme/books", latest: int | None = None) -> None:
    r = client.get(f"/v1/datasets/{dataset}")
    if latest is None:
        assert_problem(r, 404, "not_found")
    else:
        assert r.json()["latest_version"] == latest
        assert len(r.json()["versions"]) == latest


def test_publish_two_versions(client: TestClient, institution: Identity) -> None:
    v1 = publish_dataset(client, institution, "acme/books")
    v2 = publish_dataset(
        client,
        institution,
        "acme/books",
        version=2,
        previous=v1.digest,
        create_namespace=False,
        seed=1,
    )
    detail = client.get("/v1/datasets/acme/books").json()
    assert detail["latest_version"] == 2
    assert [v["digest"] for v in detail["versions"]] == [v1.digest, v2.digest]
    assert detail["terms_sha256"] == v2.manifest.terms_sha256
    assert detail["columns"] == [
        {"name": "id", "type": "int64"},
        {"name": "text", "type": "string"},
    ]
    assert detail["publisher"] == institution.keyid
    assert client.get("/v1/datasets/acme/books/versions/1/manifest").content == v1.envelope
    assert client.get("/v1/datasets/acme/books/versions/latest/manifest").content == v2.envelope
    listing = client.get("/v1/datasets?search=BOOKS").json()
    assert listing["total"] == 1
    assert listing["items"][0]["dataset"] == "acme/books"
    assert client.get("/v1/datasets?search=nothing").json() == {"items": [], "total": 0}
    ns = client.get("/v1/namespaces/acme").json()
    assert ns["owner"] == institution.keyid
    assert [k["keyid"] for k in ns["keys"]] == [institution.keyid]


def test_manifest_signed_by_another_key_is_refused(
    client: TestClient, institution: Identity
) -> None:
    _namespace(client, institution)
    forger = SigningKey.generate()
    built = build_manifest(forger, "acme/books", [arrow_shard(10)])
    _upload_all(client, institution, built)
    assert_problem(publish(client, institution, built), 422, "untrusted_key")
    _unchanged(client)


def test_tampered_manifest_is_refused(client: TestClient, institution: Identity) -> None:
    _namespace(client, institution)
    built = build_manifest(institution.key, "acme/books", [arrow_shard(10)])
    _upload_all(client, institution, built)
    env = json.loads(built.envelope)
    payload = json.loads(base64.b64decode(env["payload"]))
    payload["license"] = "MIT"
    env["payload"] = base64.b64encode(
        json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    ).decode()
    tampered = Built(
        manifest=built.manifest, envelope=json.dumps(env).encode(), digest="", blobs={}
    )
    assert_problem(publish(client, institution, tampered), 422, "bad_signature")
    _unchanged(client)


def test_manifest_for_another_dataset_is_refused(client: TestClient, institution: Identity) -> None:
    _namespace(client, institution)
    built = build_manifest(institution.key, "acme/other", [arrow_shard(10)])
    _upload_all(client, institution, built)
    r = client.post(
        "/v1/datasets/acme/books/versions",
        content=built.envelope,
        headers={**institution.headers, "Content-Type": "application/json"},
    )
    assert_problem(r, 403, "out_of_scope")
    _unchanged(client)


def test_missing_blob_is_refused(client: TestClient, institution: Identity) -> None:
    _namespace(client, institution)
    shard = arrow_shard(10)
    built = build_manifest(institution.key, "acme/books", [shard])
    upload_blob(client, institution, shard)  # the chunk list is not uploaded
    body = assert_problem(publish(client, institution, built), 422, "blob_unknown")
    assert built.manifest.shards[0].chunks in body["detail"]
    _unchanged(client)


def test_wrong_blob_size_is_refused(client: TestClient, institution: Identity) -> None:
    _namespace(client, institution)
    shard = arrow_shard(10)
    honest = build_manifest(institution.key, "acme/books", [shard])
    _upload_all(client, institution, honest)
    entry = honest.manifest.shards[0]
    lying = honest.manifest.model_copy(
        update={
            "shards": [entry.model_copy(update={"bytes": entry.bytes + 1})],
            "total_bytes": entry.bytes + 1,
        }
    )
    env = sign_statement(lying, [institution.key])
    built = Built(manifest=lying, envelope=env.to_json(), digest=env.digest, blobs={})
    assert_problem(publish(client, institution, built), 422, "blob_size_mismatch")
    _unchanged(client)


def test_chain_must_link_to_the_latest_version(client: TestClient, institution: Identity) -> None:
    v1 = publish_dataset(client, institution, "acme/books")
    shards = [arrow_shard(10, seed=7)]
    wrong_previous = build_manifest(
        institution.key, "acme/books", shards, version=2, previous="0" * 64
    )
    _upload_all(client, institution, wrong_previous)
    assert_problem(publish(client, institution, wrong_previous), 409, "chain_broken")
    gap = build_manifest(institution.key, "acme/books", shards, version=3, previous=v1.digest)
    assert_problem(publish(client, institution, gap), 409, "chain_broken")
    again = build_manifest(institution.key, "acme/books", shards, version=1)
    assert_problem(publish(client, institution, again), 409, "conflict")
    assert_problem(publish(client, institution, v1), 409, "conflict")
    _unchanged(client, latest=1)


def test_only_the_namespace_owner_publishes(client: TestClient, institution: Identity) -> None:
    _namespace(client, institution)
    other = new_identity(client, "institution", "Globex")
    built = build_manifest(other.key, "acme/books", [arrow_shard(10)])
    r = client.post("/v1/uploads", json={"namespace": "acme", "size": 10}, headers=other.headers)
    assert_problem(r, 403, "access_denied")  # not even its bytes go into acme
    assert_problem(publish(client, other, built), 403, "access_denied")
    r = client.post("/v1/namespaces", json={"name": "acme"}, headers=other.headers)
    assert_problem(r, 409, "conflict")
    _unchanged(client)


def test_concurrent_publish_of_the_same_version(
    app: FastAPI, client: TestClient, institution: Identity
) -> None:
    _namespace(client, institution)
    first = build_manifest(institution.key, "acme/books", [arrow_shard(10, seed=1)])
    second = build_manifest(institution.key, "acme/books", [arrow_shard(10, seed=2)])
    _upload_all(client, institution, first)
    _upload_all(client, institution, second)

    async def race() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as ac:
            headers = {**institution.headers, "Content-Type": "application/json"}
            results = await asyncio.gather(
                *(
                    ac.post("/v1/datasets/acme/books/versions", content=b.envelope, headers=headers)
                    for b in (first, second, first, second)
                )
            )
        for r in results:
            if r.status_code != 201:
                assert r.json()["code"] == "conflict", r.text
        return sorted(r.status_code for r in results)

    assert asyncio.run(race()) == [201, 409, 409, 409]
    detail = client.get("/v1/datasets/acme/books").json()
    assert detail["latest_version"] == 1
    assert len(detail["versions"]) == 1
    assert detail["versions"][0]["digest"] in {first.digest, second.digest}
