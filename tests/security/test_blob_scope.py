"""Namespace-scoped blobs: another institution cannot launder, probe or read A's bytes.

Every test runs against a real registry over HTTP (SQLite and PostgreSQL) and checks that a
refusal left the database, the blob store and the audit log as they were, apart from the
refusal's own audit entry.
"""

from __future__ import annotations

import hashlib

import httpx

from ..registry_helpers import Registry
from ..server.server_helpers import (
    Identity,
    arrow_shard,
    assert_problem,
    blob_url,
    build_manifest,
    new_identity,
    publish,
    publish_dataset,
    upload_blob,
)
from .security_helpers import snapshot


def _rival(http: httpx.Client) -> Identity:
    """Institution B, owning the namespace ``globex``."""
    rival = new_identity(http, "institution", "Globex Labs")
    r = http.post("/v1/namespaces", json={"name": "globex"}, headers=rival.headers)
    assert r.status_code == 201, r.text
    return rival


def _refused_read(entry: tuple[object, ...], who: Identity, dataset: str, code: str) -> None:
    """``entry`` (an audit row without its time) is ``who``'s refused read in ``dataset``."""
    _, action, principal, where, _, grant_id, detail = entry
    assert (action, principal, where, grant_id) == ("read_refused", who.keyid, dataset, None)
    assert f": {code}: " in str(detail)


def test_copied_digests_are_not_publishable(
    live: Registry, http: httpx.Client, institution: Identity
) -> None:
    """B lists A's (public) shard digests in a manifest of its own namespace: refused, because
    B never sent those bytes into ``globex``; nothing is stored."""
    built = publish_dataset(http, institution, "acme/books")
    rival = _rival(http)
    shards = [built.blobs[s.sha256] for s in built.manifest.shards]
    copy = build_manifest(rival.key, "globex/books", shards)
    assert {s.sha256 for s in copy.manifest.shards} == {s.sha256 for s in built.manifest.shards}
    before = snapshot(live.settings)
    body = assert_problem(publish(http, rival, copy), 422, "blob_unknown")
    assert "namespace globex" in body["detail"]
    assert before.changes(snapshot(live.settings)) == {}
    assert_problem(http.get("/v1/datasets/globex/books"), 404, "not_found")
    # Nor can B read them through a dataset of its own, or through the removed global URL.
    digest = built.manifest.shards[0].sha256
    r = http.get(blob_url("globex/books", digest), headers=rival.headers)
    assert_problem(r, 404, "not_found")
    r = http.get(f"/v1/blobs/sha256:{digest}", headers=rival.headers)
    assert r.status_code == 404


def test_holding_the_bytes_is_what_counts(
    live: Registry, http: httpx.Client, institution: Identity
) -> None:
    """B sending a different byte string under A's digest is refused and leaves nothing; B
    sending the very bytes (it holds them) may publish them, stored once on disk."""
    built = publish_dataset(http, institution, "acme/books")
    rival = _rival(http)
    digest = built.manifest.shards[0].sha256
    data = built.blobs[digest]
    forged = b"x" * len(data)
    before = snapshot(live.settings)
    r = http.post(
        "/v1/uploads", json={"namespace": "globex", "size": len(forged)}, headers=rival.headers
    )
    upload_id = r.json()["upload_id"]
    r = http.patch(
        f"/v1/uploads/{upload_id}",
        content=forged,
        headers={
            **rival.headers,
            "Content-Type": "application/octet-stream",
            "Upload-Offset": "0",
        },
    )
    assert r.status_code == 202, r.text
    r = http.put(f"/v1/uploads/{upload_id}?digest=sha256:{digest}", headers=rival.headers)
    assert_problem(r, 422, "digest_mismatch")
    assert before.changes(snapshot(live.settings)) == {}
    assert (live.settings.storage_path / "sha256" / digest).read_bytes() == data
    r = http.head(f"/v1/namespaces/globex/blobs/sha256:{digest}", headers=rival.headers)
    assert r.status_code == 404
    # The real bytes: linked into globex, stored once.
    for blob in built.blobs.values():
        upload_blob(http, rival, blob, namespace="globex")
    after = snapshot(live.settings)
    assert after.files == before.files
    copy = build_manifest(
        rival.key, "globex/books", [built.blobs[s.sha256] for s in built.manifest.shards]
    )
    assert publish(http, rival, copy).status_code == 201


def test_head_is_no_oracle_for_unpublished_uploads(
    live: Registry, http: httpx.Client, institution: Identity, granted: Identity
) -> None:
    """A's finished but unpublished upload: B, and even a grantee of A's dataset, get the same
    404 as for bytes that exist nowhere; A itself sees it."""
    secret = arrow_shard(30, seed=77)
    digest = upload_blob(http, institution, secret)
    nowhere = hashlib.sha256(b"exists nowhere").hexdigest()
    rival = _rival(http)
    for probe in (digest, nowhere):
        urls = [blob_url("acme/books", probe), f"/v1/namespaces/acme/blobs/sha256:{probe}"]
        urls += [f"/v1/namespaces/globex/blobs/sha256:{probe}"]
        for url in urls:
            assert http.head(url, headers=rival.headers).status_code == 404, url
        assert http.head(urls[0], headers=granted.headers).status_code == 404
    # The grantee reading it through acme/books: refused exactly like bytes that do not exist.
    answers = {}
    for d in (digest, nowhere):
        r = http.get(blob_url("acme/books", d), headers=granted.headers)
        answers[d] = assert_problem(r, 404, "not_found")["detail"].replace(d, "<d>")
    assert answers[digest] == answers[nowhere]
    r = http.head(blob_url("acme/books", digest), headers=institution.headers)
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(secret))
    r = http.head(f"/v1/namespaces/acme/blobs/sha256:{digest}", headers=institution.headers)
    assert r.status_code == 200


def test_read_without_grant_is_refused_and_audited_in_that_dataset(
    live: Registry, http: httpx.Client, institution: Identity, researcher: Identity
) -> None:
    built = publish_dataset(http, institution, "acme/books")
    publish_dataset(http, institution, "acme/atlas", create_namespace=False, seed=5)
    rival = _rival(http)
    digest = built.manifest.shards[0].sha256
    for who in (researcher, rival):
        before = snapshot(live.settings)
        r = http.get(blob_url("acme/books", digest), headers=who.headers)
        body = assert_problem(r, 403, "access_denied")
        assert "acme/books" in body["detail"]
        assert "ostraca request acme/books" in (body.get("hint") or "")
        change = before.changes(snapshot(live.settings))
        assert set(change) == {"rows", "audit"}
        assert change["rows"] == {"audit_events": 1}
        (entry,) = change["audit"]
        _refused_read(entry, who, "acme/books", "access_denied")
    # The owner's audit log shows them (not the log of the alphabetically first holder).
    log = http.get("/v1/datasets/acme/books/audit", headers=institution.headers).json()["items"]
    assert [e["principal"] for e in log if e["action"] == "read_refused"] == [
        researcher.keyid,
        rival.keyid,
    ]
    log = http.get("/v1/datasets/acme/atlas/audit", headers=institution.headers).json()["items"]
    assert not [e for e in log if e["action"] == "read_refused"]


def test_grant_on_one_dataset_does_not_read_another_through_it(
    live: Registry, http: httpx.Client, institution: Identity, granted: Identity
) -> None:
    """A grantee of acme/books asks for acme/atlas's shard through acme/books's URL."""
    atlas = publish_dataset(http, institution, "acme/atlas", create_namespace=False, seed=9)
    digest = atlas.manifest.shards[0].sha256
    before = snapshot(live.settings)
    r = http.get(blob_url("acme/books", digest), headers=granted.headers)
    assert_problem(r, 404, "not_found")
    change = before.changes(snapshot(live.settings))
    assert change["rows"] == {"audit_events": 1}
    (entry,) = change["audit"]
    _refused_read(entry, granted, "acme/books", "not_found")
    # Through its own dataset it is refused too (no grant there), audited into acme/atlas.
    r = http.get(blob_url("acme/atlas", digest), headers=granted.headers)
    assert_problem(r, 403, "access_denied")
    log = http.get("/v1/datasets/acme/atlas/audit", headers=institution.headers).json()["items"]
    assert [(e["action"], e["principal"]) for e in log][-1] == ("read_refused", granted.keyid)
