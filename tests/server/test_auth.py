from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from ostraca.protocol_spec import SigningKey
from ostraca.protocol_spec.auth import login_message

from .server_helpers import (
    Identity,
    MovableClock,
    assert_problem,
    login,
    new_identity,
    registration_body,
)


def test_register_and_whoami(client: TestClient) -> None:
    key = SigningKey.generate()
    r = client.post(
        "/v1/principals",
        json=registration_body(key, name="Ada", kind="researcher", affiliation="Uni"),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["keyid"] == key.keyid
    assert body["keys"] == [{"keyid": key.keyid, "algorithm": "ed25519", "public": key.public.b64}]
    assert client.get(f"/v1/principals/{key.keyid}").json() == body
    token = login(client, key)
    assert token["principal"] == body
    r = client.get("/v1/whoami", headers={"Authorization": f"Bearer {token['token']}"})
    assert r.json() == body


def test_register_twice_is_a_conflict(client: TestClient) -> None:
    key = SigningKey.generate()
    body = registration_body(key, name="Ada", kind="researcher")
    assert client.post("/v1/principals", json=body).status_code == 201
    assert_problem(client.post("/v1/principals", json=body), 409, "conflict")


def test_registration_needs_proof_of_possession(client: TestClient) -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    body = registration_body(key, name="Ada", kind="researcher")
    # Signed by another key: the registrant does not hold the private key.
    body["signature"] = registration_body(other, name="Ada", kind="researcher")["signature"]
    assert_problem(client.post("/v1/principals", json=body), 422, "bad_signature")
    # The profile is bound by the signature: changing the name breaks it.
    body = registration_body(key, name="Ada", kind="researcher")
    body["name"] = "Mallory"
    assert_problem(client.post("/v1/principals", json=body), 422, "bad_signature")
    assert_problem(client.get(f"/v1/principals/{key.keyid}"), 404, "not_found")


def _token_request(client: TestClient, key: SigningKey, nonce: str) -> dict[str, str]:
    sig = base64.b64encode(key.sign(login_message(nonce))).decode()
    return {"keyid": key.keyid, "nonce": nonce, "signature": sig}


def test_nonce_is_single_use(client: TestClient, researcher: Identity) -> None:
    nonce = client.post("/v1/auth/challenge", json={"keyid": researcher.keyid}).json()["nonce"]
    body = _token_request(client, researcher.key, nonce)
    assert client.post("/v1/auth/token", json=body).status_code == 200
    assert_problem(client.post("/v1/auth/token", json=body), 401, "unauthenticated")


def test_nonce_expires(client: TestClient, researcher: Identity, clock: MovableClock) -> None:
    nonce = client.post("/v1/auth/challenge", json={"keyid": researcher.keyid}).json()["nonce"]
    clock.advance(301)
    r = client.post("/v1/auth/token", json=_token_request(client, researcher.key, nonce))
    assert_problem(r, 401, "unauthenticated")


def test_nonce_is_bound_to_its_key(client: TestClient, researcher: Identity) -> None:
    mallory = new_identity(client, "researcher", "Mallory")
    nonce = client.post("/v1/auth/challenge", json={"keyid": researcher.keyid}).json()["nonce"]
    r = client.post("/v1/auth/token", json=_token_request(client, mallory.key, nonce))
    assert_problem(r, 401, "unauthenticated")


def test_login_signature_must_verify(client: TestClient, researcher: Identity) -> None:
    nonce = client.post("/v1/auth/challenge", json={"keyid": researcher.keyid}).json()["nonce"]
    body = _token_request(client, SigningKey.generate(), nonce)
    body["keyid"] = researcher.keyid
    assert_problem(client.post("/v1/auth/token", json=body), 401, "unauthenticated")


def test_token_expires(client: TestClient, researcher: Identity, clock: MovableClock) -> None:
    assert client.get("/v1/whoami", headers=researcher.headers).status_code == 200
    clock.advance(3601)
    r = assert_problem(client.get("/v1/whoami", headers=researcher.headers), 401, "unauthenticated")
    assert "expired" in r["detail"]


def test_logout_revokes_the_token(client: TestClient, researcher: Identity) -> None:
    r = client.delete("/v1/auth/token", headers=researcher.headers)
    assert r.status_code == 204
    assert_problem(client.get("/v1/whoami", headers=researcher.headers), 401, "unauthenticated")


def test_bad_bearer_headers(client: TestClient) -> None:
    r = assert_problem(client.get("/v1/whoami"), 401, "unauthenticated")
    assert r["hint"] == "ostraca login"
    for header in ("Bearer nope", "Basic abc", "Bearer "):
        r2 = client.get("/v1/whoami", headers={"Authorization": header})
        assert_problem(r2, 401, "unauthenticated")
        assert r2.headers["www-authenticate"] == "Bearer"
