"""Revocation reaching a run within its check interval, ``--from-dir`` asking the registry,
``--resume`` keeping the run's settings, and the bookkeeping an attestation signs — on the
session's real registry, with real grants revoked by their real publisher while a run trains."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ostraca.client.api import RegistryClient
from ostraca.client.config import load_config
from ostraca.client.local import open_pulled
from ostraca.client.pull import pull
from ostraca.protocol_spec import RevokedError, SigningKey, utc_now
from ostraca.protocol_spec.errors import UnavailableError
from ostraca.trainer.attest import attest_run
from ostraca.trainer.checkpoint import CHECKPOINT_FILE, CONFIG_FILE, iter_metrics, load_checkpoint
from ostraca.trainer.cli import EXIT_REVOKED, register_trainer_commands
from ostraca.trainer.revocation import RegistryGrantCheck
from ostraca.trainer.train import train

from ..client.client_helpers import Identity, make_identity
from .spawned import config
from .trainer_testlib import Published, TrainerData

TINY = ["--batch-size", "2", "--seq-len", "32", "--device", "cpu"]
CHECK_EVERY = 0.5
SLACK = 2.0  # a step, the checkpoint, a loaded machine


def _app() -> typer.Typer:
    app = typer.Typer()
    register_trainer_commands(app)
    return app


def _granted(data: TrainerData, tmp_path: Path, name: str, what: Published) -> tuple[Identity, str]:
    """A researcher of this test's own, granted ``what`` by its publisher."""
    who = make_identity(tmp_path, data.registry.url, name, "researcher")
    request = who.client.request_access(what.dataset, purpose="a revocable run")
    grant = data.publisher.client.approve(request.request_id, expires=utc_now() + timedelta(days=1))
    return who, grant.grant_id


def _granted_copy(
    data: TrainerData, tmp_path: Path, name: str, what: Published
) -> tuple[Identity, str, Path]:
    """:func:`_granted`, and the researcher's pulled copy of ``what``."""
    who, grant_id = _granted(data, tmp_path, name, what)
    copy = tmp_path / "copy"
    pull(what.dataset, copy, client=who.client)
    return who, grant_id, copy


class _RevokeLater:
    """Revoke ``grant_id`` (as its publisher) once the run in ``run`` has logged ``steps``
    steps; remembers when."""

    def __init__(self, data: TrainerData, grant_id: str, *, run: Path, steps: int = 5) -> None:
        self.at: float | None = None
        self._thread = threading.Thread(target=self._revoke, args=(data, grant_id, run, steps))
        self._thread.start()

    def _revoke(self, data: TrainerData, grant_id: str, run: Path, steps: int) -> None:
        deadline = time.monotonic() + 60
        while len(list(iter_metrics(run))) < steps and time.monotonic() < deadline:
            time.sleep(0.02)
        data.publisher.client.revoke(grant_id, reason="project ended")
        self.at = time.monotonic()

    def join(self) -> float:
        self._thread.join()
        assert self.at is not None
        return self.at


def test_background_check_stops_a_run_within_its_interval(
    data: TrainerData, tmp_path: Path
) -> None:
    # Bob trains from his pulled copy, which reads no byte from the registry: only the
    # background check can see the revocation.
    bob, grant_id, copy = _granted_copy(data, tmp_path, "bob", data.corpus)
    source = open_pulled(copy, home=bob.home, columns=["text"])
    out = tmp_path / "run"
    cfg = config(out, steps=20_000, grant_check_every=CHECK_EVERY)
    revoker = _RevokeLater(data, grant_id, run=out)
    with pytest.raises(RevokedError, match="checkpoint saved") as stopped:
        train(cfg, source=source, log=None, grant_check=RegistryGrantCheck(bob.client, source))
    ended = time.monotonic()
    bob.client.close()
    assert ended - revoker.join() < CHECK_EVERY + SLACK
    ckpt = load_checkpoint(out / CHECKPOINT_FILE)
    assert 5 <= ckpt["step"] < 20_000
    assert f"after step {ckpt['step']}" in str(stopped.value)
    assert [m["step"] for m in iter_metrics(out)][-1] == ckpt["step"]
    # The background check saw it (a read refused would name the shard).
    assert f"ended (grant {grant_id[:16]}… has been revoked)" in str(stopped.value), stopped.value


def test_a_registry_out_of_reach_does_not_stop_a_run(data: TrainerData, tmp_path: Path) -> None:
    # Every check fails (nothing listens there); none says access ended: the run goes on.
    config_ = load_config(home=data.researcher.home, registry="http://127.0.0.1:9")
    source = data.pulled(data.small, columns=["text"])
    with RegistryClient(config_) as client:
        check = RegistryGrantCheck(client, source)
        with pytest.raises(UnavailableError):
            check()
        cfg = config(tmp_path / "run", steps=30, grant_check_every=0.05)
        result = train(cfg, source=source, log=None, grant_check=check)
    assert result.step == 30
    assert result.stopped is None


def test_cli_exits_3_with_one_message_when_revoked_mid_run(
    data: TrainerData, tmp_path: Path
) -> None:
    carol, grant_id = _granted(data, tmp_path, "carol", data.corpus)
    run = tmp_path / "run"
    args = ["train", "--dataset", data.corpus.dataset, "--out", str(run), "--steps", "20000"]
    args += [*TINY, "--grant-check-every", str(CHECK_EVERY)]
    revoker = _RevokeLater(data, grant_id, run=run)
    r = CliRunner().invoke(_app(), args, env=carol.env())
    ended = time.monotonic()
    carol.client.close()
    assert r.exit_code == EXIT_REVOKED, r.output
    assert ended - revoker.join() < CHECK_EVERY + SLACK
    said = " ".join(r.output.split())  # the console wraps long lines
    assert said.count("error [revoked]") == 1
    assert said.count("has been revoked") == 1
    assert "checkpoint saved to" in said
    assert 5 <= load_checkpoint(run / CHECKPOINT_FILE)["step"] < 20_000


def test_from_dir_checks_revocation_when_the_registry_answers(
    data: TrainerData, tmp_path: Path
) -> None:
    dave, grant_id, copy = _granted_copy(data, tmp_path, "dave", data.small)
    runner = CliRunner()
    base = ["train", "--from-dir", str(copy), "--steps", "2", *TINY]

    r = runner.invoke(_app(), [*base, "--out", str(tmp_path / "a")], env=dave.env())
    assert r.exit_code == 0, r.output
    assert "not checked" not in r.output

    offline = {**dave.env(), "OSTRACA_REGISTRY": "http://127.0.0.1:9"}
    r = runner.invoke(_app(), [*base, "--out", str(tmp_path / "b")], env=offline)
    assert r.exit_code == 0, r.output
    assert r.output.count("revocation not checked (offline)") == 1

    data.publisher.client.revoke(grant_id)
    r = runner.invoke(_app(), [*base, "--out", str(tmp_path / "c")], env=dave.env())
    dave.client.close()
    assert r.exit_code == EXIT_REVOKED, r.output
    assert r.output.count("error [revoked]") == 1
    assert not (tmp_path / "c" / CHECKPOINT_FILE).exists()


def test_resume_keeps_the_saved_settings_and_refuses_conflicts(
    data: TrainerData, tmp_path: Path
) -> None:
    runner, env = CliRunner(), data.researcher.env()
    run = tmp_path / "run"
    start = ["train", "--dataset", data.corpus.dataset, "--out", str(run), *TINY]
    r = runner.invoke(
        _app(), [*start, "--steps", "3", "--eval-shards", "1", "--eval-every", "3"], env=env
    )
    assert r.exit_code == 0, r.output
    assert (run / CHECKPOINT_FILE).exists()

    # Left out on resume: kept (the held-out shard stays held out), as is --steps.
    r = runner.invoke(_app(), [*start, "--resume"], env=env)
    assert r.exit_code == 0, r.output
    saved = json.loads((run / CONFIG_FILE).read_text())["train"]
    assert (saved["eval_shards"], saved["eval_every"], saved["steps"]) == (1, 3, 3)

    # Given again with another value: refused, in one line, before anything is touched.
    before = (run / CHECKPOINT_FILE).read_bytes()
    r = runner.invoke(_app(), [*start, "--resume", "--eval-shards", "2"], env=env)
    assert r.exit_code == 1
    assert "error [malformed]" in r.output
    assert "--eval-shards 2 (saved: 1)" in r.output
    assert (run / CHECKPOINT_FILE).read_bytes() == before
    # The same value again is fine; a setting of one invocation may change.
    r = runner.invoke(
        _app(), [*start, "--resume", "--eval-shards", "1", "--device", "cpu"], env=env
    )
    assert r.exit_code == 0, r.output


def test_eval_every_without_eval_shards_is_refused(data: TrainerData, tmp_path: Path) -> None:
    args = ["train", "--dataset", data.corpus.dataset, "--out", str(tmp_path / "r"), *TINY]
    r = CliRunner().invoke(_app(), [*args, "--eval-every", "5"], env=data.researcher.env())
    assert r.exit_code == 1
    assert "needs held-out shards" in r.output
    assert not (tmp_path / "r").exists()


def test_attestation_counts_the_shards_read_and_verifies_without_torch(
    data: TrainerData, tmp_path: Path
) -> None:
    # Three steps of 2×33 tokens use a sliver of the first item the stream handed out; that
    # item (up to 512 rows) holds both shards of ``acme/small``: both were read.
    run = tmp_path / "run"
    args = ["train", "--dataset", data.small.dataset, "--out", str(run), "--steps", "3", *TINY]
    r = CliRunner().invoke(_app(), args, env=data.researcher.env())
    assert r.exit_code == 0, r.output
    prov = load_checkpoint(run / CHECKPOINT_FILE)["provenance"][0]
    assert (prov["shards_consumed"], prov["shards"]) == (2, [0, 1])
    key = SigningKey.from_seed(b"\x05" * 32)
    attest_run(run, key)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ostraca.protocol_spec import VerifyKey\n"
        "from ostraca.trainer.attest import verify_run_attestation\n"
        "key = VerifyKey.from_b64(sys.argv[2])\n"
        "v = verify_run_attestation(Path(sys.argv[1]), trainer_key=key)\n"
        "print(v.statement.datasets[0].shards_consumed, 'torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(run), key.public.b64],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.split() == ["2", "False"]
