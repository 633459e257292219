"""End-to-end encryption against a real registry over HTTP (ENCRYPTION.md): the storage and the
cache hold no plaintext; a grantee streams plaintext; a publisher on a new machine approves from
its escrow; a later version reaches a live grant; a grant without keys, a revocation, and a
registry serving another grantee's keys all stop the read."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from ostraca.client.api import RegistryClient
from ostraca.client.config import load_config
from ostraca.client.keyflow import key_grants
from ostraca.client.publishing import PublishResult
from ostraca.client.rekey import rekey
from ostraca.client.stream import open_dataset
from ostraca.protocol_spec import (
    AccessDeniedError,
    AccessRequest,
    DatasetManifest,
    Envelope,
    sign_statement,
    utc_now,
)
from ostraca.protocol_spec.enckeys import KeyGrant
from ostraca.protocol_spec.errors import MissingKeyError

from ..registry_helpers import Registry
from .client_helpers import Identity, make_identity, read_back, sample_table
from .stream_helpers import grant_access

DATASET = "acme/books"
MARK = b"row 1 "  # every row's text starts with "row <id> <sha256>"


def all_bytes_under(root: Path) -> list[bytes]:
    return [p.read_bytes() for p in root.rglob("*") if p.is_file()]


def manifest_of(client: RegistryClient, result: PublishResult) -> DatasetManifest:
    env = client.get_manifest_envelope(result.dataset, result.version)
    return DatasetManifest.from_json_obj(json.loads(env.payload))


def test_storage_and_cache_hold_no_plaintext_and_grantee_reads(
    registry_server: Registry,
    publisher: Identity,
    researcher: Identity,
    publish_table: Callable[..., PublishResult],
) -> None:
    table = sample_table(2000)
    result = publish_table(table, shard_bytes=65536, chunk_bytes=65536)
    m = manifest_of(publisher.client, result)
    assert m.encryption is not None
    assert "default" in m.encryption
    assert len(m.shards) > 1
    # The registry's storage (blobs, database) holds no row of the dataset.
    stored = all_bytes_under(registry_server.data_dir)
    assert stored
    assert not any(MARK in data for data in stored)
    grant_access(publisher.client, researcher.client, DATASET)
    with open_dataset(DATASET, client=researcher.client) as ds:
        assert ds.to_table().equals(table)
    cached = all_bytes_under(researcher.config.cache_path)
    assert cached
    assert not any(MARK in data for data in cached)


def test_publisher_on_a_new_machine_approves_from_escrow(
    tmp_path: Path,
    registry: str,
    publisher: Identity,
    researcher: Identity,
    publish_table: Callable[..., PublishResult],
) -> None:
    table = sample_table(300)
    publish_table(table)
    # Only the identity file travels; staging, cache and everything else stay behind.
    home = tmp_path / "new-machine"
    home.mkdir()
    shutil.copy(publisher.home / "identity.pem", home / "identity.pem")
    fresh = RegistryClient(load_config(home=home, registry=registry))
    fresh.login()
    grant_access(fresh, researcher.client, DATASET)
    with open_dataset(DATASET, client=researcher.client) as ds:
        assert ds.to_table().equals(table)
    fresh.close()


def test_new_version_reaches_a_live_grant(
    publisher: Identity, researcher: Identity, publish_table: Callable[..., PublishResult]
) -> None:
    publish_table(sample_table(100))
    grant_access(publisher.client, researcher.client, DATASET)
    second = sample_table(150, seed=1)
    publish_table(second)
    with open_dataset(DATASET, client=researcher.client) as ds:
        assert ds.manifest.statement.version == 2
        assert ds.to_table().equals(second)


def test_grant_without_keys_yields_nothing(
    tmp_path: Path,
    registry: str,
    publisher: Identity,
    publish_table: Callable[..., PublishResult],
) -> None:
    publish_table(sample_table(100))
    # A researcher whose encryption key is not registered: approve refuses to pretend.
    silent = make_identity(tmp_path, registry, "silent", "researcher")
    req = AccessRequest(
        dataset=DATASET,
        requester=silent.keyid,
        purpose="no encryption key",
        terms_sha256=silent.client.get_dataset(DATASET).terms_sha256,
        accept_terms=True,
        created=utc_now(),
        nonce="0" * 32,
    )
    filed = silent.client.file_request(sign_statement(req, [silent.key]))
    with pytest.raises(MissingKeyError):
        publisher.client.approve(filed.request_id, expires=utc_now() + timedelta(days=1))
    with pytest.raises(MissingKeyError):
        open_dataset(DATASET, client=silent.client)
    silent.client.close()


def test_revoked_grantee_reads_nothing(
    publisher: Identity, researcher: Identity, publish_table: Callable[..., PublishResult]
) -> None:
    publish_table(sample_table(100))
    grant = grant_access(publisher.client, researcher.client, DATASET)
    publisher.client.revoke(grant.grant_id)
    with pytest.raises(AccessDeniedError):
        open_dataset(DATASET, client=researcher.client)


def test_no_encrypt_is_plaintext(
    publisher: Identity, publish_table: Callable[..., PublishResult]
) -> None:
    table = sample_table(100)
    result = publish_table(table, encrypt=False)
    assert manifest_of(publisher.client, result).encryption is None
    assert read_back(publisher.client, result).equals(table)


def test_column_groups_have_their_own_keys(
    registry_server: Registry,
    publisher: Identity,
    researcher: Identity,
    publish_table: Callable[..., PublishResult],
) -> None:
    table = sample_table(500)
    result = publish_table(table, column_groups={"pii": ["text"]})
    m = manifest_of(publisher.client, result)
    assert m.encryption is not None
    assert set(m.encryption) == {"default", "pii"}
    assert m.encryption["default"].key_commitment != m.encryption["pii"].key_commitment
    assert not any(MARK in data for data in all_bytes_under(registry_server.data_dir))
    # Granted the default group only: its key is wrapped, the pii group's is not.
    grant_access(publisher.client, researcher.client, DATASET, columns=["id", "score"])
    with open_dataset(DATASET, client=researcher.client) as ds:
        assert ds.to_table().equals(table.select(["id", "score"]))
        assert ds.data_keys is not None
        assert set(ds.data_keys.keys()[1]) == {"default"}


def test_rekey_after_a_revocation(
    tmp_path: Path,
    registry: str,
    publisher: Identity,
    researcher: Identity,
    publish_table: Callable[..., PublishResult],
) -> None:
    table = sample_table(300)
    v1 = publish_table(table, column_groups={"pii": ["text"]})
    revoked = make_identity(tmp_path, registry, "revoked", "researcher")
    gone = grant_access(publisher.client, revoked.client, DATASET)
    grant_access(publisher.client, researcher.client, DATASET)
    publisher.client.revoke(gone.grant_id)
    v2 = rekey(publisher.client, DATASET)
    old, new = manifest_of(publisher.client, v1), manifest_of(publisher.client, v2)
    assert (new.version, new.column_groups) == (2, old.column_groups)
    assert old.encryption is not None
    assert new.encryption is not None
    assert old.encryption["pii"].key_commitment != new.encryption["pii"].key_commitment
    with open_dataset(DATASET, client=researcher.client) as ds:
        assert ds.manifest.statement.version == 2
        assert ds.to_table().equals(table)
    # The revoked grantee was given no key of the new version.
    grants = key_grants(publisher.client, DATASET)
    assert all(
        2 not in {k.version for k in KeyGrant.from_json_obj(payload_of(g.envelope)).keys}
        for g in grants
        if g.grant_id == gone.grant_id
    )
    revoked.client.close()


def payload_of(envelope: dict[str, object]) -> dict[str, object]:
    obj: dict[str, object] = json.loads(Envelope.from_dict(envelope).payload)
    return obj
