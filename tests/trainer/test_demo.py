"""``ostraca demo``'s training (quick, a few steps): the held-out loss it reports is measured on
the shards it held out, which training never read — checked on the run's own records (its
saved settings, its checkpoint's data split and provenance, its metrics), not on timing."""

from __future__ import annotations

import math
from pathlib import Path

from ostraca.cli.demo import DemoOptions, run_demo
from ostraca.trainer.checkpoint import (
    CHECKPOINT_FILE,
    iter_metrics,
    load_checkpoint,
    read_run_config,
)


def test_demo_reports_a_held_out_loss_on_shards_training_never_read(tmp_path: Path) -> None:
    report = run_demo(DemoOptions(data_dir=tmp_path, quick=True, steps=6))
    n = report.published_shards
    saved = read_run_config(report.run_dir)
    assert saved is not None
    k = saved["train"]["eval_shards"]
    assert k >= 1
    assert n >= 4 + k  # 4 training streams need 4 shards, and k more are held out
    held_out = list(range(n - k, n))  # the last shards in manifest order
    ckpt = load_checkpoint(report.run_dir / CHECKPOINT_FILE)
    split = ckpt["split"]
    assert split["eval_shards"] == held_out
    train_read = set(split["train_shards_read"])
    assert train_read
    assert max(train_read) < n - k  # training read shards, none of them held out
    (prov,) = ckpt["provenance"]
    eval_read = set(prov["shards"]) - train_read  # what else the run read: evaluation
    assert eval_read
    assert eval_read <= set(held_out)
    evals = [m for m in iter_metrics(report.run_dir) if "eval_loss" in m]
    assert [m["step"] for m in evals] == [2, 4, 6]
    assert all(m["eval_shards"] == held_out for m in evals)
    assert report.held_out.shards == tuple(held_out)
    assert report.held_out.loss_per_byte == evals[-1]["eval_loss_per_byte"]  # what it printed
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    # Per byte: the loss per token over the bytes per token of the held-out text (BPE: > 1).
    per_byte = evals[-1]["eval_loss"] / evals[-1]["eval_bytes_per_token"]
    assert math.isclose(report.held_out.loss_per_byte, per_byte, rel_tol=1e-9)
    assert evals[-1]["eval_bytes_per_token"] > 2
    assert report.sample.startswith("    def")
