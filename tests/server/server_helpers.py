"""Reusable helpers for tests against the real registry app: identities that register and log
in with real signatures, Arrow shards, signed manifests, requests, grants and revocations.

Everything goes through HTTP (``fastapi.testclient.TestClient`` or any ``httpx.Client`` whose
base URL is the registry), so the client's tests can reuse these against the same app.
"""

from __future__ import annotations

import base64
import hashlib
import io
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import httpx2
import pyarrow as pa
from fastapi.testclient import TestClient

from ostraca.protocol_spec import (
    AccessGrant,
    AccessRequest,
    DatasetManifest,
    Revocation,
    ShardEntry,
    SigningKey,
    sign_statement,
    utc_now,
)
from ostraca.protocol_spec.auth import login_message, registration_message
from ostraca.protocol_spec.models import Column

HttpClient = httpx.Client | TestClient
"""A client whose base URL is the registry (in-process or over loopback)."""
HttpResponse = httpx.Response | httpx2.Response

CHUNK_BYTES = 65536
TERMS = "Research use only. No redistribution. Cite the source."


class MovableClock:
    """The registry's clock in tests: real time plus an offset that tests advance."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return (datetime.now(UTC) + self.offset).replace(microsecond=0)

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class Identity:
    key: SigningKey
    name: str
    kind: str
    token: str = ""
    principal: dict[str, Any] = field(default_factory=dict)

    @property
    def keyid(self) -> str:
        return self.key.keyid

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def registration_body(
    key: SigningKey, *, name: str, kind: str, affiliation: str = ""
) -> dict[str, Any]:
    message = registration_message(
        public_key=key.public.b64, name=name, kind=kind, affiliation=affiliation
    )
    return {
        "public_key": {"keyid": key.keyid, "algorithm": "ed25519", "public": key.public.b64},
        "name": name,
        "kind": kind,
        "affiliation": affiliation,
        "signature": base64.b64encode(key.sign(message)).decode(),
    }


def login(client: HttpClient, key: SigningKey) -> dict[str, Any]:
    """The challenge–response login; returns the token response."""
    r = client.post("/v1/auth/challenge", json={"keyid": key.keyid})
    assert r.status_code == 200, r.text
    nonce = r.json()["nonce"]
    sig = base64.b64encode(key.sign(login_message(nonce))).decode()
    r = client.post("/v1/auth/token", json={"keyid": key.keyid, "nonce": nonce, "signature": sig})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def new_identity(client: HttpClient, kind: str, name: str) -> Identity:
    """Register a fresh key as ``kind`` and log it in."""
    key = SigningKey.generate()
    r = client.post("/v1/principals", json=registration_body(key, name=name, kind=kind))
    assert r.status_code == 201, r.text
    token = login(client, key)
    return Identity(key=key, name=name, kind=kind, token=token["token"], principal=r.json())


def arrow_shard(rows: int, *, seed: int = 0) -> bytes:
    """An Arrow IPC stream with ``rows`` rows of a text column (deterministic in ``seed``)."""
    table = pa.table(
        {
            "id": pa.array(range(seed * rows, seed * rows + rows), pa.int64()),
            "text": pa.array([f"row {seed}-{i} " + "x" * (i % 50) for i in range(rows)]),
        }
    )
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def arrow_schema_b64() -> str:
    schema = pa.schema([("id", pa.int64()), ("text", pa.string())])
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def chunk_list(data: bytes, chunk_bytes: int = CHUNK_BYTES) -> bytes:
    """The concatenated raw sha256 of each ``chunk_bytes`` piece of a shard."""
    return b"".join(
        hashlib.sha256(data[i : i + chunk_bytes]).digest() for i in range(0, len(data), chunk_bytes)
    )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Built:
    """A signed manifest and the blobs it names."""

    manifest: DatasetManifest
    envelope: bytes
    digest: str
    blobs: dict[str, bytes]


def build_manifest(
    publisher: SigningKey,
    dataset: str,
    shards: list[bytes],
    *,
    version: int = 1,
    previous: str | None = None,
    rows_per_shard: int = 100,
    terms: str = TERMS,
    created: datetime | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Built:
    blobs: dict[str, bytes] = {}
    entries = []
    for data in shards:
        chunks = chunk_list(data, chunk_bytes)
        blobs[sha256_hex(data)] = data
        blobs[sha256_hex(chunks)] = chunks
        entries.append(
            ShardEntry(
                sha256=sha256_hex(data),
                bytes=len(data),
                rows=rows_per_shard,
                chunks=sha256_hex(chunks),
            )
        )
    manifest = DatasetManifest(
        dataset=dataset,
        version=version,
        previous=previous,
        created=created or utc_now(),
        publisher=publisher.keyid,
        license="CC-BY-4.0",
        terms=terms,
        description=f"test dataset {dataset}",
        arrow_schema=arrow_schema_b64(),
        columns=[Column(name="id", type="int64"), Column(name="text", type="string")],
        chunk_bytes=chunk_bytes,
        shards=entries,
        total_rows=rows_per_shard * len(shards),
        total_bytes=sum(len(s) for s in shards),
    )
    env = sign_statement(manifest, [publisher])
    return Built(manifest=manifest, envelope=env.to_json(), digest=env.digest, blobs=blobs)


def upload_blob(
    client: HttpClient, who: Identity, data: bytes, *, namespace: str = "acme", chunk: int = 1 << 20
) -> str:
    """The whole upload protocol (start in ``namespace``, PATCH chunks, PUT digest); returns the
    hex digest. The namespace defaults to the one of the tests' usual ``acme/books``."""
    r = client.post(
        "/v1/uploads", json={"namespace": namespace, "size": len(data)}, headers=who.headers
    )
    assert r.status_code == 201, r.text
    upload_id = r.json()["upload_id"]
    for offset in range(0, len(data), chunk):
        r = client.patch(
            f"/v1/uploads/{upload_id}",
            content=data[offset : offset + chunk],
            headers={
                **who.headers,
                "Content-Type": "application/octet-stream",
                "Upload-Offset": str(offset),
            },
        )
        assert r.status_code == 202, r.text
    digest = sha256_hex(data)
    r = client.put(f"/v1/uploads/{upload_id}?digest=sha256:{digest}", headers=who.headers)
    assert r.status_code == 201, r.text
    return digest


def post_envelope(client: HttpClient, path: str, who: Identity, envelope: bytes) -> HttpResponse:
    return client.post(
        path, content=envelope, headers={**who.headers, "Content-Type": "application/json"}
    )


def blob_url(dataset: str, digest: str) -> str:
    """The blob's URL read through ``dataset``."""
    return f"/v1/datasets/{dataset}/blobs/sha256:{digest}"


def publish(client: HttpClient, who: Identity, built: Built) -> HttpResponse:
    ns, _, name = built.manifest.dataset.partition("/")
    return post_envelope(client, f"/v1/datasets/{ns}/{name}/versions", who, built.envelope)


def publish_dataset(
    client: HttpClient,
    who: Identity,
    dataset: str,
    *,
    shards: int = 2,
    rows: int = 100,
    version: int = 1,
    previous: str | None = None,
    create_namespace: bool = True,
    seed: int = 0,
) -> Built:
    """Create the namespace (if asked), upload every blob, publish; returns what was signed."""
    if create_namespace:
        r = client.post(
            "/v1/namespaces", json={"name": dataset.partition("/")[0]}, headers=who.headers
        )
        assert r.status_code == 201, r.text
    data = [arrow_shard(rows, seed=seed * 1000 + i) for i in range(shards)]
    built = build_manifest(
        who.key, dataset, data, version=version, previous=previous, rows_per_shard=rows
    )
    for blob in built.blobs.values():
        upload_blob(client, who, blob, namespace=dataset.partition("/")[0])
    r = publish(client, who, built)
    assert r.status_code == 201, r.text
    return built


def sign_request(
    who: Identity, dataset: str, *, terms: str = TERMS, purpose: str = "train a small model"
) -> bytes:
    req = AccessRequest(
        dataset=dataset,
        requester=who.keyid,
        purpose=purpose,
        terms_sha256=hashlib.sha256(terms.encode()).hexdigest(),
        accept_terms=True,
        created=utc_now(),
        nonce=secrets.token_hex(16),
    )
    return sign_statement(req, [who.key]).to_json()


def request_access(client: HttpClient, who: Identity, dataset: str) -> str:
    r = post_envelope(client, "/v1/requests", who, sign_request(who, dataset))
    assert r.status_code == 201, r.text
    request_id: str = r.json()["request_id"]
    return request_id


def sign_grant(
    publisher: Identity,
    grantee: str,
    dataset: str,
    *,
    request: str | None = None,
    min_version: int = 1,
    max_version: int | None = None,
    not_before: datetime | None = None,
    expires: datetime | None = None,
    columns: list[str] | None = None,
    groups: list[str] | None = None,
) -> bytes:
    now = utc_now()
    grant = AccessGrant(
        dataset=dataset,
        publisher=publisher.keyid,
        grantee=grantee,
        request=request,
        min_version=min_version,
        max_version=max_version,
        columns=columns,
        groups=groups,
        spec_version=1 if groups is None else 2,
        not_before=not_before or now - timedelta(minutes=1),
        expires=expires or now + timedelta(days=30),
        created=now,
    )
    return sign_statement(grant, [publisher.key]).to_json()


def grant_access(
    client: HttpClient, publisher: Identity, grantee: Identity, dataset: str, **kw: Any
) -> str:
    r = post_envelope(
        client, "/v1/grants", publisher, sign_grant(publisher, grantee.keyid, dataset, **kw)
    )
    assert r.status_code == 201, r.text
    grant_id: str = r.json()["grant_id"]
    return grant_id


def sign_revocation(publisher: Identity, dataset: str, grant_id: str) -> bytes:
    rev = Revocation(
        dataset=dataset,
        publisher=publisher.keyid,
        grant=grant_id,
        reason="terms breached",
        created=utc_now(),
    )
    return sign_statement(rev, [publisher.key]).to_json()


def revoke(client: HttpClient, publisher: Identity, dataset: str, grant_id: str) -> None:
    r = post_envelope(
        client, "/v1/revocations", publisher, sign_revocation(publisher, dataset, grant_id)
    )
    assert r.status_code == 201, r.text


def assert_problem(r: HttpResponse, status: int, code: str) -> dict[str, Any]:
    """The response is RFC 9457 problem+json with this status and code."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["type"] == f"urn:ostraca:error:{code}"
    assert body["title"]
    assert body["detail"]
    return body
