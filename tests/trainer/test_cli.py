"""``ostraca train`` end to end: streaming from a live registry, and ``--from-dir`` from a
pulled copy with the registry out of reach."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from typer.testing import CliRunner

from ostraca.trainer.checkpoint import CHECKPOINT_FILE, load_checkpoint
from ostraca.trainer.cli import register_trainer_commands

from .trainer_testlib import TrainerData, flip_middle_byte

TINY_RUN = ["--steps", "3", "--batch-size", "2", "--seq-len", "32", "--device", "cpu"]
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens


def _app() -> typer.Typer:
    app = typer.Typer()
    register_trainer_commands(app)
    return app


def test_cli_train_streams_from_the_registry(data: TrainerData, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--dataset", data.corpus.dataset, "--out", str(run), *TINY_RUN]
    r = CliRunner().invoke(_app(), args, env=data.researcher.env())
    assert r.exit_code == 0, r.output
    assert "step 3, 192 tokens" in r.output
    ckpt = load_checkpoint(run / CHECKPOINT_FILE)
    assert ckpt["step"] == 3
    prov = ckpt["provenance"][0]
    assert prov["dataset"] == data.corpus.dataset
    assert prov["manifest_digest"] == data.corpus.result.digest
    assert prov["grant_ids"] == [data.pulled(data.corpus).provenance.grant_id]


def test_cli_train_from_a_pulled_copy_offline(data: TrainerData, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {**data.researcher.env(), "OSTRACA_REGISTRY": UNREACHABLE}
    streamed, offline = tmp_path / "streamed", tmp_path / "offline"
    r = runner.invoke(
        _app(),
        ["train", "--dataset", data.corpus.dataset, "--out", str(streamed), *TINY_RUN],
        env=env,
    )
    assert r.exit_code == 1  # streaming needs the registry...
    assert "unavailable" in r.output
    copy = str(data.corpus.copy)
    r = runner.invoke(
        _app(), ["train", "--from-dir", copy, "--out", str(offline), *TINY_RUN], env=env
    )
    assert r.exit_code == 0, r.output  # ...a pulled copy does not
    ckpt = load_checkpoint(offline / CHECKPOINT_FILE)
    assert ckpt["step"] == 3
    assert ckpt["provenance"][0]["manifest_digest"] == data.corpus.result.digest

    # Exactly one source; an explicit publisher key is checked (a stranger's is refused).
    both = ["train", "--from-dir", copy, "--dataset", data.corpus.dataset, "--out", str(offline)]
    assert runner.invoke(_app(), both, env=env).exit_code == 2
    stranger = data.researcher.key.public.b64
    r = runner.invoke(
        _app(),
        ["train", "--from-dir", copy, "--publisher-key", stranger, "--out", str(offline)],
        env=env,
    )
    assert r.exit_code == 1
    assert "untrusted_key" in r.output

    # A tampered shard stops training with the digest error, before any of its rows is used.
    tampered = tmp_path / "tampered"
    shutil.copytree(data.corpus.copy, tampered)
    for shard in data.corpus.result.shards:
        flip_middle_byte(tampered / "shards" / shard.sha256)
    r = runner.invoke(
        _app(),
        ["train", "--from-dir", str(tampered), "--out", str(tmp_path / "t"), *TINY_RUN],
        env=env,
    )
    assert r.exit_code == 1
    assert "digest_mismatch" in r.output


def test_cli_train_takes_the_root_commands_global_options(
    data: TrainerData, tmp_path: Path
) -> None:
    # Mounted under the root ``ostraca`` command, the global options (kept in the root
    # context's ``obj``) win over the environment: here the registry's URL.
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context, registry: str | None = None) -> None:
        ctx.obj = {} if registry is None else {"registry": registry}

    register_trainer_commands(app)
    env = {**data.researcher.env(), "OSTRACA_REGISTRY": UNREACHABLE}
    run = ["train", "--dataset", data.small.dataset, "--out", str(tmp_path / "r"), *TINY_RUN]
    r = CliRunner().invoke(app, run, env=env)
    assert r.exit_code == 1
    assert "unavailable" in r.output
    r = CliRunner().invoke(app, ["--registry", data.registry.url, *run], env=env)
    assert r.exit_code == 0, r.output
