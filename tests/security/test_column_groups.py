"""Column groups the registry enforces: a grantee limited to some groups cannot fetch another
group's blobs by asking for them directly, and a grant whose limits the registry could not
enforce is refused. Real registry over HTTP, SQLite and PostgreSQL; each refusal leaves nothing
behind but its own audit entry."""

from __future__ import annotations

import hashlib
import os

import httpx

from ostraca.protocol_spec import sign_statement
from ostraca.protocol_spec.chunks import chunk_list_bytes
from ostraca.protocol_spec.models import DatasetManifest

from ..registry_helpers import Registry
from ..server.server_helpers import (
    Built,
    Identity,
    assert_problem,
    blob_url,
    build_manifest,
    chunk_list,
    post_envelope,
    publish,
    request_access,
    sign_grant,
    upload_blob,
)
from .security_helpers import snapshot

DATASET = "acme/people"


def _grouped(http: httpx.Client, owner: Identity) -> tuple[DatasetManifest, dict[str, str]]:
    """``acme/people`` with ``text`` in the column group ``pii`` (``id`` stays ``default``), each
    shard's pii stream a blob of its own; returns the manifest and each blob's group."""
    r = http.post("/v1/namespaces", json={"name": "acme"}, headers=owner.headers)
    assert r.status_code == 201, r.text
    plain = build_manifest(owner.key, DATASET, [os.urandom(5000), os.urandom(7000)])
    obj = plain.manifest.model_dump(mode="json")
    group_of = dict.fromkeys(plain.blobs, "default")
    for shard in obj["shards"]:
        data = os.urandom(3000)
        chunks = chunk_list(data, obj["chunk_bytes"])
        assert len(chunks) == chunk_list_bytes(len(data), obj["chunk_bytes"])
        digest, chunks_digest = hashlib.sha256(data).hexdigest(), hashlib.sha256(chunks).hexdigest()
        shard["groups"] = [
            {"group": "pii", "sha256": digest, "bytes": len(data), "chunks": chunks_digest}
        ]
        obj["total_bytes"] += len(data)
        for blob in (data, chunks):
            upload_blob(http, owner, blob)
        group_of.update({digest: "pii", chunks_digest: "pii"})
    for blob in plain.blobs.values():
        upload_blob(http, owner, blob)
    obj.update(spec_version=2, column_groups=[{"name": "pii", "columns": ["text"]}])
    manifest = DatasetManifest.from_json_obj(obj)
    env = sign_statement(manifest, [owner.key])
    published = publish(http, owner, Built(manifest, env.to_json(), env.digest, blobs={}))
    assert published.status_code == 201, published.text
    return manifest, group_of


def test_a_group_outside_the_grant_is_refused_raw(
    live: Registry, http: httpx.Client, institution: Identity, researcher: Identity
) -> None:
    manifest, group_of = _grouped(http, institution)
    request = request_access(http, researcher, DATASET)
    grant = sign_grant(institution, researcher.keyid, DATASET, request=request, groups=["default"])
    r = post_envelope(http, "/v1/grants", institution, grant)
    assert r.status_code == 201, r.text
    assert r.json()["groups"] == ["default"]
    shard = manifest.shards[0]
    r = http.get(blob_url(DATASET, shard.sha256), headers=researcher.headers)
    assert r.status_code == 200
    for digest in (shard.groups or [])[0].sha256, (shard.groups or [])[0].chunks:
        assert group_of[digest] == "pii"
        before = snapshot(live.settings)
        r = http.get(blob_url(DATASET, digest), headers=researcher.headers)
        body = assert_problem(r, 403, "out_of_scope")
        assert "column group 'pii'" in body["detail"]
        change = before.changes(snapshot(live.settings))
        assert change["rows"] == {"audit_events": 1}
        (entry,) = change["audit"]
        assert entry[1:4] == ("read_refused", researcher.keyid, DATASET)
        assert ": out_of_scope: " in str(entry[6])
        assert http.head(blob_url(DATASET, digest), headers=researcher.headers).status_code == 404
    # The owner reads every group.
    r = http.get(blob_url(DATASET, (shard.groups or [])[0].sha256), headers=institution.headers)
    assert r.status_code == 200


def test_grants_the_registry_could_not_enforce_are_refused(
    live: Registry, http: httpx.Client, institution: Identity, researcher: Identity
) -> None:
    _grouped(http, institution)
    for kw, needle in (
        ({"columns": ["id"], "groups": None}, "groups it covers"),  # not whole groups
        ({"columns": ["text"], "groups": ["default"]}, "groups it covers"),  # contradicts
        ({"columns": None, "groups": ["secret"]}, "no column group(s) secret"),
    ):
        before = snapshot(live.settings)
        grant = sign_grant(institution, researcher.keyid, DATASET, **kw)
        r = post_envelope(http, "/v1/grants", institution, grant)
        assert needle in assert_problem(r, 422, "malformed")["detail"]
        assert before.changes(snapshot(live.settings)) == {}
    grant = sign_grant(institution, researcher.keyid, DATASET, columns=["id"], groups=["default"])
    assert post_envelope(http, "/v1/grants", institution, grant).status_code == 201
