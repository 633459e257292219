"""Hostile registries and proxies against the client's log rules (LOG.md L1–L13), each a real
registry over HTTP behind a real proxy that rewrites its answers: a frozen view, a forked log,
a hidden revocation, forged and swapped checkpoints, bad proofs. Each is refused with its typed
error, and nothing is stored or pinned."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ostraca.client.config import ReadLimits
from ostraca.client.stream import open_dataset
from ostraca.client.tlog import (
    CheckpointStore,
    LogCheck,
    LogReader,
    StoredLog,
    check_statements,
    entries,
    parse_bundle,
)
from ostraca.client.wire import Wire
from ostraca.protocol_spec import Envelope, RevokedError
from ostraca.protocol_spec.checkpoint import Checkpoint, sign_checkpoint
from ostraca.protocol_spec.errors import OstracaError
from ostraca.protocol_spec.keys import SigningKey
from ostraca.protocol_spec.models import utc_now
from ostraca.server.app import create_app
from ostraca.server.migrate import upgrade_to_head
from ostraca.server.settings import Settings

from ..registry_helpers import serve_app as serve
from .server_helpers import MovableClock
from .tlog_helpers import HostileProxy, World, make_world

ORIGIN = "registry.test/log"


@dataclass
class Scene:
    world: World
    proxy: HostileProxy
    clock: MovableClock
    settings: Settings

    def envelopes(self, *, grant: bool) -> list[Envelope]:
        client = self.world.researcher.client
        manifest = client.get_manifest_envelope(self.world.dataset)
        return [manifest, self.world.grant_env] if grant else [manifest]

    def check(self, *, days: float = 0, grant: bool = True) -> LogCheck:
        now = utc_now() + timedelta(days=days)
        envelopes = self.envelopes(grant=grant)
        return check_statements(self.world.researcher.client, envelopes, now=now)

    def stored(self) -> StoredLog | None:
        client = self.world.researcher.client
        return CheckpointStore(client.config.home, client.base_url).load()


@pytest.fixture
def scene(
    settings: Settings, clock: MovableClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Scene]:
    monkeypatch.setenv("OSTRACA_LOG_ORIGIN", ORIGIN)
    with (
        serve(create_app(settings, clock=clock)) as url,
        HostileProxy(url) as proxy,
        make_world(tmp_path, url, proxy.url) as world,
    ):
        yield Scene(world=world, proxy=proxy, clock=clock, settings=settings)


def _refused(scene: Scene, code: str, *, days: float = 0, grant: bool = True) -> OstracaError:
    before = scene.stored()
    with pytest.raises(OstracaError) as info:
        scene.check(days=days, grant=grant)
    assert info.value.code == code, info.value.message
    assert scene.stored() == before  # nothing cached or pinned
    return info.value


def _serve_note(scene: Scene, note: bytes) -> None:
    scene.proxy.rewrite = lambda path, body: note if path.startswith("/v1/log/checkpoint") else body


def _rewrite_proofs(scene: Scene, change: Callable[[dict[str, Any]], None]) -> None:
    """The proxy changes the ``GET /v1/log/proofs`` answer (JSON) with ``change``."""

    def rewrite(path: str, body: bytes) -> bytes:
        if not path.startswith("/v1/log/proofs"):
            return body
        answer = json.loads(body)
        change(answer)
        return json.dumps(answer).encode()

    scene.proxy.rewrite = rewrite


def _bundle(entries: list[bytes]) -> str:
    return base64.b64encode(b"".join(len(e).to_bytes(4, "big") + e for e in entries)).decode()


def _scanned(answer: dict[str, Any]) -> list[bytes]:
    return parse_bundle(base64.b64decode(answer["scans"][0]["entries"]), wanted=100)


def test_frozen_registry_is_refused_once_too_old(scene: Scene) -> None:
    scene.check()
    frozen = httpx.get(f"{scene.world.registry}/v1/log/checkpoint").content
    _serve_note(scene, frozen)  # the proxy keeps serving this checkpoint forever
    scene.clock.advance(25 * 3600)
    err = _refused(scene, "stale_checkpoint", days=25 / 24)
    assert "frozen" in (err.hint or "")
    scene.proxy.rewrite = lambda _path, body: body
    scene.check(days=25 / 24)  # the registry itself re-signed: fresh again


def test_two_forks_of_the_log_are_an_equivocation(
    scene: Scene, tmp_path: Path, clock: MovableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene.check()
    # The operator runs a fork with the same log key and origin, and a different history.
    fork_settings = Settings(data_dir=tmp_path / "fork")
    fork_settings.data_dir.mkdir()
    upgrade_to_head(fork_settings.database_url)
    monkeypatch.setenv("OSTRACA_LOG_KEY_PATH", str(scene.settings.data_dir / "log.key"))
    with serve(create_app(fork_settings, clock=clock)) as fork:
        with make_world(tmp_path / "f", fork, fork) as fork_world:
            fork_world.publisher.client.revoke(fork_world.grant.grant_id)  # a bigger tree
        scene.proxy.upstream = fork
        err = _refused(scene, "equivocation")
    trusted, presented = err.trusted, err.presented  # type: ignore[attr-defined]
    assert trusted != presented
    assert trusted.decode() in (err.hint or "")
    assert presented.decode() in (err.hint or "")


def test_a_hidden_revocation_is_found_in_the_log(scene: Scene) -> None:
    scene.check()
    scene.world.publisher.client.revoke(scene.world.grant.grant_id)

    def hide(path: str, body: bytes) -> bytes:
        if path.startswith("/v1/grants"):
            return body.replace(b'"revoked":true', b'"revoked":false')
        return body

    scene.proxy.rewrite = hide
    listed = scene.world.researcher.client.list_grants(dataset=scene.world.dataset)
    assert not any(g.revoked for g in listed)  # the listing lies
    before = scene.stored()
    with pytest.raises(RevokedError):
        scene.check()
    assert scene.stored() == before


def test_a_revocation_dropped_from_the_log_entries_breaks_the_range_proof(scene: Scene) -> None:
    scene.check()
    scene.world.publisher.client.revoke(scene.world.grant.grant_id)

    def drop(answer: dict[str, Any]) -> None:
        kept = [e for e in _scanned(answer) if b"revocation+json" not in e]
        answer["scans"][0]["entries"] = _bundle(kept)

    _rewrite_proofs(scene, drop)
    _refused(scene, "bad_inclusion_proof")


def test_a_revocation_dropped_from_the_paged_entries_breaks_the_range_proof(scene: Scene) -> None:
    scene.world.publisher.client.revoke(scene.world.grant.grant_id)
    client = scene.world.researcher.client
    reader = LogReader(client._wire, client.config.home)
    signed = reader.checkpoint(utc_now())

    def drop(path: str, body: bytes) -> bytes:
        if not path.startswith("/v1/log/entries"):
            return body
        kept = [e for e in parse_bundle(body, wanted=100) if b"revocation+json" not in e]
        return b"".join(len(e).to_bytes(4, "big") + e for e in kept)

    scene.proxy.rewrite = drop
    with pytest.raises(OstracaError) as info:
        reader.require_unrevoked(scene.world.grant.grant_id, 5, signed)
    assert info.value.code == "bad_inclusion_proof"


def test_forged_checkpoint_is_refused(scene: Scene) -> None:
    note = httpx.get(f"{scene.world.registry}/v1/log/checkpoint").content
    lines = note.split(b"\n")
    lines[1] = b"4"  # a smaller tree under the same signature
    _serve_note(scene, b"\n".join(lines))
    _refused(scene, "bad_signature")


def test_swapped_log_key_is_refused_and_nothing_pinned(scene: Scene) -> None:
    scene.check()
    real = Checkpoint.from_text(
        httpx.get(f"{scene.world.registry}/v1/log/checkpoint").content.decode().split("\n\n")[0]
        + "\n"
    )
    _serve_note(scene, sign_checkpoint(real, key=SigningKey.generate(), now=utc_now()))
    _refused(scene, "untrusted_key")


def test_first_use_with_a_swapped_key_pins_nothing(scene: Scene) -> None:
    other = SigningKey.generate()
    real = httpx.get(f"{scene.world.registry}/v1/log/checkpoint").content.decode()
    cp = Checkpoint.from_text(real.split("\n\n")[0] + "\n")

    def swap(path: str, body: bytes) -> bytes:
        if path.startswith("/v1/log/checkpoint"):
            return sign_checkpoint(cp, key=other, now=utc_now())
        return body

    scene.proxy.rewrite = swap
    _refused(scene, "untrusted_key")
    assert scene.stored() is None


def test_bad_inclusion_proof_is_refused(scene: Scene) -> None:
    def corrupt(answer: dict[str, Any]) -> None:
        answer["statements"][0]["proof"]["hashes"][0] = base64.b64encode(bytes(32)).decode()

    _rewrite_proofs(scene, corrupt)
    _refused(scene, "bad_inclusion_proof")


def test_another_entry_shown_for_a_statement_is_refused(scene: Scene) -> None:
    def other_entry(answer: dict[str, Any]) -> None:
        answer["statements"][0]["entry"] = base64.b64encode(b'{"payloadType":"x"}').decode()

    _rewrite_proofs(scene, other_entry)
    with pytest.raises(OstracaError) as info:
        scene.check()
    assert info.value.code in {"malformed", "bad_inclusion_proof"}
    assert scene.stored() is None


def test_bad_consistency_proof_is_an_equivocation(scene: Scene) -> None:
    scene.check()
    scene.world.publisher.client.revoke(scene.world.grant.grant_id)

    def corrupt(answer: dict[str, Any]) -> None:
        answer["consistency"]["hashes"][-1] = base64.b64encode(b"\x01" * 32).decode()

    _rewrite_proofs(scene, corrupt)
    _refused(scene, "equivocation")


def test_rollback_to_an_older_checkpoint_is_refused(scene: Scene) -> None:
    old = httpx.get(f"{scene.world.registry}/v1/log/checkpoint").content
    scene.world.publisher.client.revoke(scene.world.grant.grant_id)
    assert scene.check(grant=False).checkpoint.checkpoint.size == 10
    _serve_note(scene, old)
    _refused(scene, "rollback", grant=False)


def test_open_dataset_checks_the_log(scene: Scene) -> None:
    client = scene.world.researcher.client
    with open_dataset(scene.world.dataset, client=client) as ds:
        assert ds.to_table().num_rows == 10
    frozen = httpx.get(f"{scene.world.registry}/v1/log/checkpoint").content
    _serve_note(scene, frozen)
    scene.clock.advance(25 * 3600)
    later = utc_now() + timedelta(hours=25)
    with pytest.raises(OstracaError) as info:
        open_dataset(scene.world.dataset, client=client, now=later)
    assert info.value.code == "stale_checkpoint"


def test_a_withheld_key_grant_does_not_hide_a_log_failure(scene: Scene) -> None:
    """The registry serves a stale checkpoint and withholds the researcher's key grants: the
    reader reports the log failure, not "no key grant of yours" (which would send the user to
    the publisher for a new approval)."""
    client = scene.world.researcher.client
    with open_dataset(scene.world.dataset, client=client) as ds:
        assert ds.manifest.statement.encryption is not None
        assert ds.to_table().num_rows == 10
    frozen = httpx.get(f"{scene.world.registry}/v1/log/checkpoint").content

    def rewrite(path: str, body: bytes) -> bytes:
        if path.startswith("/v1/log/checkpoint"):
            return frozen
        if "key_grants=true" in path:  # the grants, with the key grants left out
            return json.dumps({**json.loads(body), "key_grants": []}).encode()
        return b'{"items": []}' if "/key-grants" in path else body

    scene.proxy.rewrite = rewrite
    scene.clock.advance(25 * 3600)
    with pytest.raises(OstracaError) as info:
        open_dataset(scene.world.dataset, client=client, now=utc_now() + timedelta(hours=25))
    assert info.value.code == "stale_checkpoint"


def test_a_second_check_reads_only_the_new_entries(scene: Scene) -> None:
    scene.check()
    other = scene.world.researcher.client.request_access(scene.world.dataset, purpose="again")
    scene.world.publisher.client.deny_request(other.request_id, "no")
    shown: list[list[bytes]] = []
    _rewrite_proofs(scene, lambda answer: shown.append(_scanned(answer)))
    assert scene.check().checkpoint.checkpoint.size == 11
    assert [len(page) for page in shown] == [2]  # entries 9 and 10 only, not 8 again


def test_truncated_and_oversized_entry_bundles_are_refused(scene: Scene) -> None:
    scene.check()
    scene.world.publisher.client.revoke(scene.world.grant.grant_id)

    def cut(change: Callable[[bytes], bytes]) -> Callable[[dict[str, Any]], None]:
        def apply(answer: dict[str, Any]) -> None:
            raw = base64.b64decode(answer["scans"][0]["entries"])
            answer["scans"][0]["entries"] = base64.b64encode(change(raw)).decode()

        return apply

    _rewrite_proofs(scene, cut(lambda body: body[:-1]))
    _refused(scene, "bad_inclusion_proof")  # truncated
    _rewrite_proofs(scene, cut(lambda body: body + (5).to_bytes(4, "big") + b"extra"))
    _refused(scene, "bad_inclusion_proof")  # more than asked for
    _cut_entries(scene, lambda body: body + bytes(64 * 1024 * 1024))
    client = scene.world.researcher.client
    # An entry may be a whole manifest, so a page is capped at max_manifest_bytes: over it, the
    # page is refused while it is read; under it, a page with bytes past its entries is refused.
    tight = ReadLimits(max_manifest_bytes=32 * 1024 * 1024)
    with closing(Wire(client.base_url, limits=tight)) as wire, pytest.raises(OstracaError) as info:
        list(entries(wire, 0, 6))
    assert info.value.code == "malformed"  # oversized: refused while it is read
    with pytest.raises(OstracaError) as info:
        list(entries(client.transport, 0, 6))
    assert info.value.code == "bad_inclusion_proof"


def _cut_entries(scene: Scene, cut: Callable[[bytes], bytes]) -> None:
    def rewrite(path: str, body: bytes) -> bytes:
        return cut(body) if path.startswith("/v1/log/entries") else body

    scene.proxy.rewrite = rewrite


def test_a_key_grant_the_log_shows_otherwise_is_refused(scene: Scene) -> None:
    """The researcher checks its key grant's record in the log (LOG.md 1.7, L11) before it uses
    the keys: a log entry that names another recipient is not that key grant's."""
    client = scene.world.researcher.client

    def swap_recipient(answer: dict[str, Any]) -> None:
        for item in answer["statements"]:
            entry = base64.b64decode(item["entry"])
            if b"log.key-grant" in entry:
                record = json.loads(entry) | {"recipient": "0" * 64}
                compact = json.dumps(record, sort_keys=True, separators=(",", ":"))
                item["entry"] = base64.b64encode(compact.encode()).decode()

    with open_dataset(scene.world.dataset, client=client) as ds:  # the log as it is: fine
        assert ds.to_table().num_rows == 10
    _rewrite_proofs(scene, swap_recipient)
    with pytest.raises(OstracaError) as info:
        open_dataset(scene.world.dataset, client=client)
    assert info.value.code == "bad_inclusion_proof"
