"""Witnesses end to end: a registry submits each new checkpoint to two real witness services
over HTTP, which check it and cosign; the client requires k of its n known witnesses. A witness
refuses a forked checkpoint; cosignatures from unknown keys never count."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ostraca.client.tlog import LogPolicy, check_statements, log_vkey_of
from ostraca.protocol_spec.checkpoint import Checkpoint, WitnessRequest, sign_checkpoint
from ostraca.protocol_spec.errors import OstracaError
from ostraca.protocol_spec.keys import SigningKey
from ostraca.protocol_spec.models import utc_now
from ostraca.protocol_spec.note import NoteVerifier
from ostraca.server.app import create_app
from ostraca.server.settings import Settings
from ostraca.server.tlog import load_log_key, log_vkey
from ostraca.server.witness import Witness, create_witness_app

from ..registry_helpers import serve_app as serve
from .server_helpers import MovableClock
from .tlog_helpers import World, make_world

ORIGIN = "registry.test/log"


@dataclass
class Witnessed:
    world: World
    witnesses: list[NoteVerifier]
    urls: list[str]
    unknown: NoteVerifier
    """A witness the registry submits to but no client knows."""


@pytest.fixture
def witnessed(
    settings: Settings, clock: MovableClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Witnessed]:
    key_path = settings.data_dir / "log.key"
    vkey = log_vkey(ORIGIN, load_log_key(key_path))
    services = [
        Witness.open(
            name=f"w{i}.test",
            key_path=tmp_path / f"w{i}" / "witness.key",
            log_vkeys=[vkey],
            data_dir=tmp_path / f"w{i}",
        )
        for i in range(3)
    ]
    with (
        serve(create_witness_app(services[0])) as w0,
        serve(create_witness_app(services[1])) as w1,
        serve(create_witness_app(services[2])) as w2,
    ):
        monkeypatch.setenv("OSTRACA_LOG_ORIGIN", ORIGIN)
        monkeypatch.setenv("OSTRACA_LOG_WITNESSES", json.dumps([w0, w1, w2]))
        verifiers = [log_vkey_of(httpx.get(f"{w}/key").text) for w in (w0, w1, w2)]
        with (
            serve(create_app(settings, clock=clock)) as url,
            make_world(tmp_path, url, url) as world,
        ):
            yield Witnessed(
                world=world, witnesses=verifiers[:2], urls=[w0, w1, w2], unknown=verifiers[2]
            )


def _check(w: Witnessed, policy: LogPolicy) -> None:
    client = w.world.researcher.client
    envelopes = [client.get_manifest_envelope(w.world.dataset), w.world.grant_env]
    check_statements(client, envelopes, now=utc_now(), policy=policy)


def test_k_of_n_witnesses_cosign_end_to_end(witnessed: Witnessed) -> None:
    absent = NoteVerifier(name="absent.test", key=witnessed.unknown.key, sig_type=0x04)
    policy = LogPolicy(witnesses=(*witnessed.witnesses, absent), quorum=2)
    _check(witnessed, policy)
    witnessed.world.publisher.client.revoke(witnessed.world.grant.grant_id, reason="done")
    client = witnessed.world.researcher.client
    manifest = client.get_manifest_envelope(witnessed.world.dataset)
    check = check_statements(client, [manifest], now=utc_now(), policy=policy)
    assert check.checkpoint.checkpoint.size == 10  # the witnesses followed the log's growth
    assert {v.verifier for v in check.checkpoint.witnesses} == set(witnessed.witnesses)


def test_too_few_known_witnesses_is_refused(witnessed: Witnessed) -> None:
    policy = LogPolicy(witnesses=(*witnessed.witnesses, _stranger()), quorum=3)
    with pytest.raises(OstracaError) as info:
        _check(witnessed, policy)
    assert info.value.code == "witness_quorum"


def test_a_cosignature_from_an_unknown_key_does_not_count(witnessed: Witnessed) -> None:
    # The note carries the unknown witness's cosignature; the client knows only a stranger.
    with pytest.raises(OstracaError) as info:
        _check(witnessed, LogPolicy(witnesses=(_stranger(),), quorum=1))
    assert info.value.code == "witness_quorum"


def test_a_witness_refuses_a_fork(witnessed: Witnessed, settings: Settings) -> None:
    registry = witnessed.world.registry
    note = httpx.get(f"{registry}/v1/log/checkpoint").content
    size = Checkpoint.from_text(note.decode().split("\n\n")[0] + "\n").size
    forged = Checkpoint(origin=ORIGIN, size=size + 1, root=b"\x07" * 32)
    fork = sign_checkpoint(forged, key=load_log_key(settings.data_dir / "log.key"), now=utc_now())
    body = WitnessRequest(old_size=size, proof=(), note=fork).to_bytes()
    answer = httpx.post(f"{witnessed.urls[0]}/add-checkpoint", content=body)
    assert answer.status_code == 422
    stale = WitnessRequest(old_size=0, proof=(), note=fork).to_bytes()
    answer = httpx.post(f"{witnessed.urls[0]}/add-checkpoint", content=stale)
    assert answer.status_code == 409
    assert answer.text.strip() == str(size)
    unknown_log = sign_checkpoint(
        Checkpoint(origin="other.test/log", size=1, root=b"\x01" * 32),
        key=load_log_key(settings.data_dir / "other.key"),
        now=utc_now(),
    )
    body = WitnessRequest(old_size=0, proof=(), note=unknown_log).to_bytes()
    assert httpx.post(f"{witnessed.urls[0]}/add-checkpoint", content=body).status_code == 404


def _stranger() -> NoteVerifier:
    return NoteVerifier(name="stranger.test", key=SigningKey.generate().public, sig_type=0x04)


def test_witness_run_serves_its_key(tmp_path: Path) -> None:
    log = log_vkey(ORIGIN, SigningKey.generate())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["run", "--log", log, "--name", "w.test", "--data-dir", str(tmp_path / "w")]
    code = "import sys; from ostraca.cli.witness import app; app(sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                key = httpx.get(f"http://127.0.0.1:{port}/key").text.strip()
                break
            except httpx.TransportError:
                assert proc.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert log_vkey_of(key).name == "w.test"
        assert (tmp_path / "w" / "witness.key").stat().st_mode & 0o777 == 0o600
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert f"witness key {key}" in out.decode()
