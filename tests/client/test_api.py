"""The registry client against a real registry: login and token cache, error translation,
the access flow (request → grant → read → revoke), and configuration precedence."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from ostraca.client.api import RegistryClient
from ostraca.client.config import (
    DEFAULT_CACHE_BYTES,
    ClientConfig,
    load_config,
    parse_size,
    set_config_value,
)
from ostraca.client.publishing import PublishResult
from ostraca.protocol_spec import (
    AccessDeniedError,
    AccessGrant,
    AuthenticationError,
    ConflictError,
    Envelope,
    MalformedError,
    NotFoundError,
    RevokedError,
    utc_now,
    verify_grant,
    verify_manifest,
)
from ostraca.protocol_spec.errors import UnavailableError

from .client_helpers import TERMS, Identity, make_identity

PublishFn = Callable[..., PublishResult]


class _Observed(httpx.BaseTransport):
    """The real transport, with a log of (method, path) sent."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.log: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.log.append((request.method, request.url.path))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_token_is_cached_0600_reused_and_renewed(researcher: Identity) -> None:
    token_file = researcher.home / "token.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    wire = _Observed()
    with RegistryClient(researcher.config, transport=wire) as client:
        assert client.whoami().keyid == researcher.keyid
    assert wire.log == [("GET", "/v1/whoami")]  # the cached token, no new login

    # A token the registry does not know (revoked, or from a wiped registry): 401 → log in again.
    cached = json.loads(token_file.read_text())
    cached["token"]["token"] = "forged-" + cached["token"]["token"]
    token_file.write_text(json.dumps(cached))
    wire = _Observed()
    with RegistryClient(researcher.config, transport=wire) as client:
        assert client.whoami().name == "ada"
    assert wire.log == [
        ("GET", "/v1/whoami"),
        ("POST", "/v1/auth/challenge"),
        ("POST", "/v1/auth/token"),
        ("GET", "/v1/whoami"),
    ]

    # A token about to expire is renewed before use, without a 401 first.
    cached = json.loads(token_file.read_text())
    cached["token"]["expires"] = (utc_now() + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    token_file.write_text(json.dumps(cached))
    wire = _Observed()
    with RegistryClient(researcher.config, transport=wire) as client:
        client.whoami()
    assert wire.log[0] == ("POST", "/v1/auth/challenge")

    # Logging out revokes the token on the registry too.
    token = json.loads(token_file.read_text())["token"]["token"]
    researcher.client.logout()
    assert not token_file.exists()
    response = httpx.get(
        f"{researcher.config.registry}/v1/whoami", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401


def test_unreachable_registry_names_the_url_and_the_fix(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    config = load_config(home=tmp_path, registry=f"http://127.0.0.1:{port}")
    with RegistryClient(config) as client, pytest.raises(UnavailableError) as info:
        client.list_datasets()
    assert f"http://127.0.0.1:{port}" in info.value.message
    assert info.value.hint is not None
    assert "ostraca server run" in info.value.hint


def test_problems_become_typed_errors(
    publisher: Identity, researcher: Identity, publish_table: PublishFn, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError):
        researcher.client.get_dataset("acme/nothing")
    with pytest.raises(ConflictError):
        researcher.client.register("ada", "researcher", "Test")
    with pytest.raises(AccessDeniedError):
        researcher.client.create_namespace("mine")
    with pytest.raises(ConflictError):
        publisher.client.create_namespace("acme")
    stranger = make_identity(
        tmp_path, publisher.config.registry, "eve", "researcher", register=False
    )
    with stranger.client, pytest.raises(AuthenticationError):
        stranger.client.whoami()
    with pytest.raises(MalformedError):
        researcher.client.get_manifest_envelope("acme/books", 0)

    result = publish_table()
    shard = result.shards[0].sha256
    with pytest.raises(AccessDeniedError):
        researcher.client.audit("acme/books")
    with pytest.raises(AccessDeniedError) as info:
        researcher.client.get_blob(shard, dataset="acme/books")
    assert type(info.value) is AccessDeniedError
    assert info.value.hint is not None
    assert "ostraca request acme/books --purpose" in info.value.hint


def test_access_flow_request_grant_read_revoke(
    publisher: Identity, researcher: Identity, publish_table: PublishFn
) -> None:
    result = publish_table()
    detail = researcher.client.get_dataset("acme/books")
    assert detail.terms == TERMS
    assert detail.latest_version == 1
    assert [c.name for c in detail.columns] == ["id", "text", "score"]
    assert publisher.keyid in researcher.client.namespace_keys("acme")
    raw = researcher.client.get_manifest_bytes("acme/books")
    assert Envelope.from_json(raw).digest == result.digest
    assert researcher.client.list_datasets(search="books").total == 1
    assert researcher.client.list_datasets(search="no-such-thing").total == 0

    request = researcher.client.request_access("acme/books", purpose="train a small LM")
    assert request.status == "pending"
    inbox = publisher.client.list_requests(dataset="acme/books", status="pending")
    assert [r.request_id for r in inbox] == [request.request_id]
    assert inbox[0].requester.keyid == researcher.keyid

    grant = publisher.client.approve(
        request.request_id, expires=utc_now() + timedelta(days=30), columns=["id", "text"]
    )
    assert grant.grantee == researcher.keyid
    assert grant.columns == ["id", "text"]
    manifest = verify_manifest(
        researcher.client.get_manifest_envelope("acme/books"),
        publisher_keys=researcher.client.namespace_keys("acme"),
        now=utc_now(),
        dataset="acme/books",
    )
    verified = verify_grant(
        Envelope.from_dict(grant.envelope),
        manifest=manifest,
        grantee=researcher.keyid,
        now=utc_now(),
        columns=["id"],
    )
    assert isinstance(verified.statement, AccessGrant)
    assert verified.digest == grant.grant_id
    assert researcher.client.get_request(request.request_id).status == "granted"
    assert [g.grant_id for g in researcher.client.list_grants()] == [grant.grant_id]
    assert [g.grant_id for g in publisher.client.list_grants(dataset="acme/books")] == [
        grant.grant_id
    ]

    shard = result.shards[0]
    data = researcher.client.get_blob(shard.sha256, dataset="acme/books")
    assert len(data) == shard.bytes
    got = researcher.client.get_blob(shard.sha256, dataset="acme/books", byte_range=(0, 9))
    assert got == data[:10]
    assert publisher.client.blob_exists("acme", shard.sha256)
    assert not publisher.client.blob_exists("acme", "0" * 64)

    revocation = publisher.client.revoke(grant.grant_id, reason="study ended")
    assert revocation.grant_id == grant.grant_id
    assert publisher.client.get_grant(grant.grant_id).revoked
    with pytest.raises(RevokedError):
        researcher.client.get_blob(shard.sha256, dataset="acme/books")

    second = researcher.client.request_access("acme/books", purpose="again")
    denied = publisher.client.deny_request(second.request_id, "no")
    assert (denied.status, denied.reason) == ("denied", "no")

    actions = [e.action for e in publisher.client.audit("acme/books")]
    for action in ("publish", "request", "grant", "read", "revoke", "read_refused", "deny"):
        assert action in actions


def test_config_precedence_file_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OSTRACA_REGISTRY", "OSTRACA_IDENTITY", "OSTRACA_CACHE_DIR", "OSTRACA_CACHE_BYTES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OSTRACA_HOME", str(tmp_path / "home"))
    config = load_config()
    assert config == ClientConfig(home=tmp_path / "home")
    assert config.identity_path == tmp_path / "home" / "identity.pem"
    assert config.cache_path == tmp_path / "home" / "cache"
    assert config.cache_bytes == DEFAULT_CACHE_BYTES
    assert config.registry == "http://127.0.0.1:8000"

    set_config_value("registry", "https://file.example/")
    set_config_value("cache_bytes", "1GiB")
    config = load_config()
    assert (config.registry, config.cache_bytes) == ("https://file.example", 1024**3)
    monkeypatch.setenv("OSTRACA_REGISTRY", "https://env.example")
    monkeypatch.setenv("OSTRACA_CACHE_BYTES", "5MB")
    config = load_config()
    assert (config.registry, config.cache_bytes) == ("https://env.example", 5_000_000)
    config = load_config(registry="http://flag.example", cache_bytes=7)
    assert (config.registry, config.cache_bytes) == ("http://flag.example", 7)

    with pytest.raises(MalformedError, match="unknown configuration key"):
        set_config_value("colour", "blue")
    with pytest.raises(MalformedError, match="http"):
        set_config_value("registry", "ftp://x")
    assert json.loads((tmp_path / "home" / "config.json").read_text()) == {
        "cache_bytes": 1024**3,
        "registry": "https://file.example/",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64MiB", 64 * 1024**2),
        ("64MB", 64_000_000),
        ("2g", 2_000_000_000),
        ("1KiB", 1024),
        ("123", 123),
        ("1.5MiB", 1536 * 1024),
        ("20 GiB", 20 * 1024**3),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "-1", "1XB", "one"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(MalformedError):
        parse_size(text)
