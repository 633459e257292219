"""The transparency log at a real registry over HTTP, on SQLite and PostgreSQL: every accepted
statement is an entry (byte for byte), the tree and the proofs the registry serves verify with
the pure core, checkpoints are re-signed when idle, and the monitor recomputes the log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from ostraca.cli.log import app as log_cli
from ostraca.cli.log import read_log, verify_log
from ostraca.client.keyflow import key_grants
from ostraca.client.tlog import check_statements, parse_bundle
from ostraca.protocol_spec import Envelope
from ostraca.protocol_spec.checkpoint import open_checkpoint
from ostraca.protocol_spec.enckeys import key_grant_log_entry
from ostraca.protocol_spec.keys import SigningKey
from ostraca.protocol_spec.merkle import (
    ConsistencyProof,
    InclusionProof,
    MerkleTree,
    leaf_hash,
)
from ostraca.protocol_spec.models import utc_now
from ostraca.protocol_spec.note import NoteVerifier
from ostraca.server.app import create_app
from ostraca.server.settings import Settings

from ..client.client_helpers import make_identity
from ..registry_helpers import serve_app as serve
from .server_helpers import MovableClock
from .tlog_helpers import make_world

ORIGIN = "registry.test/log"
WATCHED = ["manifest", "key-grant", "access-request", "access-grant", "key-grant", "revocation"]
"""What ``log watch acme`` lists of a world whose grant was revoked (the escrow, then the
grant's data keys, are key grants; encryption keys belong to no namespace)."""


@pytest.fixture
def log_registry(
    settings: Settings, clock: MovableClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("OSTRACA_LOG_ORIGIN", ORIGIN)
    with serve(create_app(settings, clock=clock)) as url:
        yield url


def _encryption_keys(url: str, keyid: str) -> list[dict[str, object]]:
    listed = httpx.get(f"{url}/v1/principals/{keyid}/encryption-keys").json()
    return [item["envelope"] for item in listed["items"]]


def _entries(url: str) -> list[bytes]:
    size = int(httpx.get(f"{url}/v1/log/checkpoint").text.split("\n")[1])
    body = httpx.get(f"{url}/v1/log/entries", params={"start": 0, "end": size}).content
    return parse_bundle(body, wanted=size)


def test_every_accepted_statement_is_an_entry_byte_for_byte(
    log_registry: str, tmp_path: Path
) -> None:
    with make_world(tmp_path, log_registry, log_registry) as world:
        pub = world.publisher.client
        other = world.researcher.client.request_access(world.dataset, purpose="second look")
        pub.deny_request(other.request_id, "no")
        pub.revoke(world.grant.grant_id, reason="study over")
        world.researcher.client.rotate_key(SigningKey.generate(), reason="new laptop")
        entries = _entries(log_registry)
        kinds = [e.split(b'"payloadType":"', 1)[1].split(b'"', 1)[0].decode() for e in entries]
        assert kinds == [
            "application/vnd.ostraca.log.registration+json",  # the publisher
            "application/vnd.ostraca.log.registration+json",  # the researcher
            "application/vnd.ostraca.manifest+json",
            "application/vnd.ostraca.encryption-key+json",  # the publisher's, at publish
            "application/vnd.ostraca.log.key-grant+json",  # the escrow (a commitment record)
            "application/vnd.ostraca.encryption-key+json",  # the researcher's, at its request
            "application/vnd.ostraca.access-request+json",
            "application/vnd.ostraca.access-grant+json",
            "application/vnd.ostraca.log.key-grant+json",  # the grant's data keys
            "application/vnd.ostraca.access-request+json",
            "application/vnd.ostraca.log.denial+json",
            "application/vnd.ostraca.revocation+json",
            "application/vnd.ostraca.key-rotation+json",
        ]
        grant_entry = entries[7]
        assert Envelope.from_json(grant_entry) == world.grant_env
        listed = pub.get_grant(world.grant.grant_id)
        assert Envelope.from_dict(listed.envelope) == Envelope.from_json(grant_entry)
        # Encryption keys are logged as stored; a key grant as a record that commits to it
        # (LOG.md 1.7), which a client rebuilds from the envelope it was served.
        researcher_key = world.researcher.client.get_principal(world.researcher.keyid)
        [enc] = _encryption_keys(log_registry, researcher_key.keyid)
        assert Envelope.from_json(entries[5]) == Envelope.from_dict(enc)
        [mine] = [i for i in key_grants(pub, world.dataset) if i.grant_id is not None]
        record = json.loads(entries[8])
        assert entries[8] == key_grant_log_entry(Envelope.from_dict(mine.envelope))
        assert (record["key_grant"], record["grant"]) == (mine.key_grant_id, world.grant.grant_id)
        assert "wrapped" not in record
        assert json.loads(entries[4])["grant"] is None


def test_proofs_and_checkpoints_verify_with_the_core(log_registry: str, tmp_path: Path) -> None:
    with make_world(tmp_path, log_registry, log_registry) as world:
        log = NoteVerifier.from_vkey(httpx.get(f"{log_registry}/v1/log/key").text.strip())
        assert log.name == ORIGIN
        first = open_checkpoint(
            httpx.get(f"{log_registry}/v1/log/checkpoint").content, log=log, now=utc_now()
        )
        world.publisher.client.revoke(world.grant.grant_id)
        second = open_checkpoint(
            httpx.get(f"{log_registry}/v1/log/checkpoint").content, log=log, now=utc_now()
        )
        tree = MerkleTree(leaf_hash(e) for e in _entries(log_registry))
        assert (first.checkpoint.size, second.checkpoint.size) == (9, 10)
        assert tree.root(9) == first.checkpoint.root
        assert tree.root() == second.checkpoint.root
        proof = ConsistencyProof.from_dict(
            httpx.get(
                f"{log_registry}/v1/log/proof/consistency", params={"old_size": 9, "new_size": 10}
            ).json()
        )
        proof.verify(old_root=first.checkpoint.root, new_root=second.checkpoint.root)
        for index in range(10):
            answer = httpx.get(
                f"{log_registry}/v1/log/proof/inclusion", params={"index": index, "tree_size": 10}
            )
            assert answer.headers["Cache-Control"].startswith("public")
            InclusionProof.from_dict(answer.json()).verify(
                leaf=tree.node(0, index), root=second.checkpoint.root
            )


def test_idle_log_is_re_signed_after_the_interval(log_registry: str, clock: MovableClock) -> None:
    one = httpx.get(f"{log_registry}/v1/log/checkpoint").content
    assert httpx.get(f"{log_registry}/v1/log/checkpoint").content == one
    clock.advance(3601)
    two = httpx.get(f"{log_registry}/v1/log/checkpoint").content
    assert two != one
    assert two.split(b"\n\n")[0] == one.split(b"\n\n")[0]  # the same tree, signed again


def test_log_verify_and_watch(log_registry: str, tmp_path: Path) -> None:
    with make_world(tmp_path, log_registry, log_registry) as world:
        world.publisher.client.revoke(world.grant.grant_id)
        report = verify_log(log_registry, home=tmp_path / "monitor", now=utc_now())
        assert report.size == 10
        statements = read_log(log_registry, home=tmp_path / "monitor", now=utc_now())
        about = [s.kind for s in statements if s.namespace == "acme"]
        assert about == WATCHED


def test_the_researcher_checks_manifest_and_grant(log_registry: str, tmp_path: Path) -> None:
    with make_world(tmp_path, log_registry, log_registry) as world:
        client = world.researcher.client
        manifest = client.get_manifest_envelope(world.dataset)
        check = check_statements(client, [manifest, world.grant_env], now=utc_now())
        assert sorted(check.indexes.values()) == [2, 7]
        assert check.checkpoint.checkpoint.size == 9


def test_log_commands(log_registry: str, tmp_path: Path) -> None:
    with make_world(tmp_path, log_registry, log_registry) as world:
        world.publisher.client.revoke(world.grant.grant_id)
    env = {"OSTRACA_HOME": str(tmp_path / "monitor"), "OSTRACA_REGISTRY": log_registry}
    runner = CliRunner()
    done = runner.invoke(log_cli, ["verify"], env=env)
    assert done.exit_code == 0, done.output
    assert "10 entries verified against its checkpoint" in done.output
    done = runner.invoke(log_cli, ["watch", "acme", "--json"], env=env)
    assert done.exit_code == 0, done.output
    kinds = [s["kind"] for s in json.loads(done.output)]
    assert kinds == WATCHED
    done = runner.invoke(log_cli, ["watch", "acme"], env=env)
    assert "revocation" in done.output


def test_concurrent_statements_get_distinct_entries(log_registry: str, tmp_path: Path) -> None:
    def register(i: int) -> None:
        make_identity(tmp_path / str(i), log_registry, f"r{i}", "researcher").client.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(register, range(16)))
    report = verify_log(log_registry, home=tmp_path / "monitor", now=utc_now())
    assert report.size == 16
    names = {
        s.statement["name"] for s in read_log(log_registry, home=tmp_path / "m2", now=utc_now())
    }
    assert names == {f"r{i}" for i in range(16)}
