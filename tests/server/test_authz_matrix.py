"""Every endpoint × every role: anonymous, researcher without grant, researcher with grant,
another institution, the owning institution. One table, checked cell by cell."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from .conftest import World
from .server_helpers import (
    Identity,
    arrow_shard,
    build_manifest,
    new_identity,
    request_access,
    sign_grant,
    sign_request,
    sign_revocation,
    upload_blob,
)

ROLES = ("anonymous", "ungranted", "granted", "other", "owner")


@dataclass
class Cell:
    method: str
    path: str
    expected: tuple[int, int, int, int, int]
    """Status per role, in the order of ROLES."""
    body: Callable[[Identity | None], dict[str, Any]] | None = None


def test_authorization_matrix(client: TestClient, world: World) -> None:
    owner = world.owner
    bystander = new_identity(client, "researcher", "Bea Bystander")
    pending = request_access(client, world.ungranted, world.dataset)
    v2 = build_manifest(
        owner.key, world.dataset, [arrow_shard(20, seed=9)], version=2, previous=world.built.digest
    )
    for data in v2.blobs.values():
        upload_blob(client, owner, data)
    uploads = []
    for _ in range(3):
        r = client.post("/v1/uploads", json={"namespace": "acme", "size": 1}, headers=owner.headers)
        uploads.append(r.json()["upload_id"])
    grant_env = sign_grant(owner, bystander.keyid, world.dataset)
    revocation_holder: dict[str, bytes] = {}

    def json_body(payload: dict[str, Any]) -> Callable[[Identity | None], dict[str, Any]]:
        return lambda _who: {"json": payload}

    def envelope(
        make: Callable[[Identity | None], bytes],
    ) -> Callable[[Identity | None], dict[str, Any]]:
        return lambda who: {
            "content": make(who),
            "headers": {"Content-Type": "application/json"},
        }

    def own_request(who: Identity | None) -> bytes:
        return sign_request(who or world.ungranted, world.dataset)

    def revocation(_who: Identity | None) -> bytes:
        if "env" not in revocation_holder:
            revocation_holder["env"] = sign_revocation(owner, world.dataset, granted_ids[0])
        return revocation_holder["env"]

    granted_ids: list[str] = []
    ns_counter = iter(range(100))
    shard, ds = world.shard, world.dataset
    cells = [
        Cell("GET", f"/v1/principals/{owner.keyid}", (200, 200, 200, 200, 200)),
        Cell("GET", "/v1/whoami", (401, 200, 200, 200, 200)),
        Cell(
            "POST",
            "/v1/namespaces",
            (401, 403, 403, 201, 201),
            lambda _w: {"json": {"name": f"ns-{next(ns_counter)}"}},
        ),
        Cell("GET", "/v1/namespaces/acme", (200, 200, 200, 200, 200)),
        Cell("GET", "/v1/datasets", (200, 200, 200, 200, 200)),
        Cell("GET", f"/v1/datasets/{ds}", (200, 200, 200, 200, 200)),
        Cell("GET", f"/v1/datasets/{ds}/versions/1/manifest", (200, 200, 200, 200, 200)),
        Cell("GET", f"/v1/datasets/{ds}/audit", (401, 403, 403, 403, 200)),
        Cell("HEAD", f"/v1/datasets/{ds}/blobs/sha256:{shard}", (401, 404, 200, 404, 200)),
        Cell("GET", f"/v1/datasets/{ds}/blobs/sha256:{shard}", (401, 403, 200, 403, 200)),
        Cell("HEAD", f"/v1/namespaces/acme/blobs/sha256:{shard}", (401, 403, 403, 404, 200)),
        Cell("GET", f"/v1/blobs/sha256:{shard}", (404, 404, 404, 404, 404)),
        Cell(
            "POST",
            "/v1/uploads",
            (401, 403, 403, 403, 201),
            json_body({"namespace": "acme", "size": 10}),
        ),
        Cell("GET", f"/v1/uploads/{uploads[0]}", (401, 404, 404, 404, 200)),
        Cell(
            "PATCH",
            f"/v1/uploads/{uploads[0]}",
            (401, 404, 404, 404, 202),
            lambda _w: {
                "content": b"x",
                "headers": {"Content-Type": "application/octet-stream", "Upload-Offset": "0"},
            },
        ),
        Cell(
            "PUT",
            f"/v1/uploads/{uploads[0]}?digest=sha256:{hashlib.sha256(b'x').hexdigest()}",
            (401, 404, 404, 404, 201),
        ),
        Cell("DELETE", f"/v1/uploads/{uploads[1]}", (401, 404, 404, 404, 204)),
        Cell(
            "POST",
            f"/v1/datasets/{ds}/versions",
            (401, 403, 403, 403, 201),
            envelope(lambda _w: v2.envelope),
        ),
        Cell("POST", "/v1/requests", (401, 201, 201, 201, 201), envelope(own_request)),
        Cell("GET", "/v1/requests", (401, 200, 200, 200, 200)),
        Cell("GET", f"/v1/requests/{world.request_id}", (401, 404, 200, 404, 200)),
        Cell(
            "POST",
            f"/v1/requests/{pending}/deny",
            (401, 403, 404, 404, 200),
            json_body({"reason": "no"}),
        ),
        Cell("POST", "/v1/grants", (401, 403, 403, 403, 201), envelope(lambda _w: grant_env)),
        Cell("GET", "/v1/grants", (401, 200, 200, 200, 200)),
        Cell("GET", f"/v1/grants/{world.grant_id}", (401, 404, 200, 404, 200)),
        Cell("POST", "/v1/revocations", (401, 403, 403, 403, 201), envelope(revocation)),
        Cell("GET", "/healthz", (200, 200, 200, 200, 200)),
        Cell("GET", "/metrics", (200, 200, 200, 200, 200)),
        Cell("DELETE", "/v1/auth/token", (401, 204, 204, 204, 204)),
    ]
    identities: dict[str, Identity | None] = {
        "anonymous": None,
        "ungranted": world.ungranted,
        "granted": world.granted,
        "other": world.other_institution,
        "owner": owner,
    }
    wrong = []
    for cell in cells:
        for role, expected in zip(ROLES, cell.expected, strict=True):
            who = identities[role]
            kwargs = cell.body(who) if cell.body else {}
            headers = dict(kwargs.pop("headers", {}))
            if who is not None:
                headers.update(who.headers)
            r = client.request(cell.method, cell.path, headers=headers, **kwargs)
            if cell.path == "/v1/grants" and r.status_code == 201:
                granted_ids.append(r.json()["grant_id"])
            if r.status_code != expected:
                wrong.append(f"{cell.method} {cell.path} as {role}: {r.status_code} != {expected}")
            elif r.status_code >= 400 and cell.method != "HEAD":
                assert r.headers["content-type"].startswith("application/problem+json")
    assert wrong == []
