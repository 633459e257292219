from __future__ import annotations

from fastapi.testclient import TestClient
from server_helpers import Identity, publish_dataset


def test_publish_smoke(client: TestClient, institution: Identity) -> None:
    built = publish_dataset(client, institution, "acme/books")
    r = client.get("/v1/datasets/acme/books")
    assert r.status_code == 200, r.text
    assert r.json()["latest_version"] == 1
    r = client.get("/v1/datasets/acme/books/versions/latest/manifest")
    assert r.content == built.envelope
