"""The trainer end to end on CPU: learning, exact resume, DDP equivalence, revocation,
attestation, generation. The data is ``acme/corpus`` (6 shards × 120 documents) on a real
registry, streamed (``open_dataset``) or read from the researcher's pulled copy
(``open_pulled``)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from torch.multiprocessing.spawn import spawn

from ostraca.client.stream import open_dataset
from ostraca.protocol_spec import RevokedError, SigningKey, VerificationError, utc_now
from ostraca.trainer.attest import ATTESTATION_FILE, attest_run, verify_run_attestation
from ostraca.trainer.checkpoint import CHECKPOINT_FILE, iter_metrics, load_checkpoint
from ostraca.trainer.generate import generate
from ostraca.trainer.train import train

from ..client.client_helpers import make_identity
from .spawned import config, ddp_train_rank
from .trainer_testlib import RevokeAfter, TrainerData


def losses(run: Path) -> list[float]:
    return [m["loss"] for m in iter_metrics(run) if "loss" in m]


def test_loss_falls_and_eval_runs(data: TrainerData, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with data.stream(data.corpus, columns=["text"]) as source:
        result = train(config(out, steps=40, eval_every=20, eval_shards=1), source=source, log=None)
    assert result.stopped is None
    assert result.step == 40
    first, last = result.losses[:5], result.losses[-5:]
    assert sum(last) / 5 < 0.6 * (sum(first) / 5)  # from ~ln(320) toward the corpus entropy
    assert [s for s, _ in result.eval_losses] == [20, 40]
    assert result.eval_losses[1][1] < result.eval_losses[0][1]
    assert result.tokens == 40 * 4 * 64
    assert result.tokens_per_s > 0
    assert 0 <= result.data_wait_fraction < 1
    records = list(iter_metrics(out))
    assert {"loss", "tokens_per_s", "data_wait", "lr"} <= records[0].keys()
    ckpt = load_checkpoint(out / CHECKPOINT_FILE)
    assert ckpt["step"] == 40
    # 40 steps need ~10k tokens: about two of the five training shards (~4.8k tokens each),
    # plus the held-out shard 5 that evaluation read.
    prov = ckpt["provenance"][0]
    assert 5 in prov["shards"]
    assert 2 <= len(prov["shards"]) - 1 <= 3
    assert prov["shards_consumed"] == len(prov["shards"])


def test_resume_continues_bit_for_bit(data: TrainerData, tmp_path: Path) -> None:
    # The whole run streams from the registry; the interrupted one reads the pulled copy: the
    # two sources are the same verified data, so the runs agree to the bit.
    whole = tmp_path / "whole"
    with data.stream(data.corpus) as streamed:
        assert streamed.provenance == data.pulled(data.corpus).provenance
        train(config(whole), source=streamed)
    parts = tmp_path / "parts"
    first = train(config(parts, stop_after=11), source=data.pulled(data.corpus))
    assert first.stopped == "stop_after"
    second = train(config(parts, resume=True), source=data.pulled(data.corpus))
    assert second.step == 24
    assert losses(parts) == losses(whole)  # floats from JSON: exact equality, every step
    a = load_checkpoint(whole / CHECKPOINT_FILE)["model"]
    b = load_checkpoint(parts / CHECKPOINT_FILE)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_process_ddp_matches_one_process(data: TrainerData, tmp_path: Path) -> None:
    # One process accumulating 2 micro-batches reads data streams 0 and 1; two DDP ranks
    # (grad_accum 1) read stream 0 and stream 1 — the same tokens per step. The gradients are
    # then g0/2 + g1/2 (accumulated) against (g0 + g1)/2 (DDP's average): halving is exact in
    # floating point, so they agree to the last bit or nearly; the logged loss is summed in a
    # different order, hence a tolerance of a few ulps rather than equality.
    single = tmp_path / "single"
    train(config(single, steps=8, grad_accum=2), source=data.pulled(data.corpus))
    ddp = tmp_path / "ddp"
    init = f"file://{tmp_path / 'rendezvous'}"
    args = (str(data.corpus.copy), str(data.researcher.home), str(ddp), init)
    spawn(ddp_train_rank, args=args, nprocs=2)  # type: ignore[no-untyped-call]
    a, b = losses(single), losses(ddp)
    assert len(a) == len(b) == 8
    assert a[0] != a[-1]
    assert torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-5, atol=0)
    ma = load_checkpoint(single / CHECKPOINT_FILE)["model"]
    mb = load_checkpoint(ddp / CHECKPOINT_FILE)["model"]
    assert all(torch.allclose(ma[k], mb[k], rtol=1e-4, atol=1e-6) for k in ma)


def test_revocation_saves_a_checkpoint_and_stops(data: TrainerData, tmp_path: Path) -> None:
    out = tmp_path / "revoked"
    # A researcher of their own, with a grant of their own, streams from the registry. The
    # publisher revokes that grant once the trainer has begun its 3rd shard: the stream's
    # access check at the next shard boundary refuses the 4th.
    bob = make_identity(tmp_path, data.registry.url, "bob", "researcher")
    request = bob.client.request_access(data.corpus.dataset, purpose="a revocable run")
    grant = data.publisher.client.approve(request.request_id, expires=utc_now() + timedelta(days=1))
    with open_dataset(data.corpus.dataset, client=bob.client, columns=["text"]) as streamed:
        assert streamed.provenance.grant_id == grant.grant_id
        source = RevokeAfter(
            streamed, shards=3, revoke=lambda: data.publisher.client.revoke(grant.grant_id)
        )
        with pytest.raises(RevokedError, match="checkpoint saved") as stopped:
            train(config(out, steps=200), source=source)
    bob.client.close()
    assert source.revoked
    assert str(out / CHECKPOINT_FILE) in str(stopped.value)
    ckpt = load_checkpoint(out / CHECKPOINT_FILE)
    assert 0 < ckpt["step"] < 200
    assert f"after step {ckpt['step']}" in str(stopped.value)
    assert ckpt["provenance"][0]["shards_consumed"] == 3
    assert [m["step"] for m in iter_metrics(out)][-1] == ckpt["step"]


def test_attestation_verifies_and_detects_tampering(data: TrainerData, tmp_path: Path) -> None:
    out = tmp_path / "attested"
    source = data.pulled(data.corpus)
    train(config(out, steps=3), source=source)
    key = SigningKey.from_seed(b"\x07" * 32)
    path = attest_run(out, key)
    assert path == out / ATTESTATION_FILE
    v = verify_run_attestation(out, trainer_key=key.public)
    a = v.statement
    assert a.steps == 3
    assert a.tokens == 3 * 4 * 64
    assert [(d.dataset, d.manifest) for d in a.datasets] == [
        (source.provenance.dataset, source.provenance.manifest_digest)
    ]
    assert a.datasets[0].grants == [source.provenance.grant_id]
    assert a.datasets[0].license == "CC-BY-4.0"
    with pytest.raises(VerificationError):
        verify_run_attestation(out, trainer_key=SigningKey.from_seed(b"\x08" * 32).public)
    with pytest.raises(VerificationError):  # created in the verifier's past-future: refused
        verify_run_attestation(out, trainer_key=key.public, now=utc_now() - timedelta(days=1))
    ckpt = out / CHECKPOINT_FILE
    raw = bytearray(ckpt.read_bytes())
    raw[len(raw) // 2] ^= 1
    ckpt.write_bytes(bytes(raw))
    with pytest.raises(VerificationError, match="sha256"):
        verify_run_attestation(out / ATTESTATION_FILE, trainer_key=key.public)


def test_generation_returns_text(data: TrainerData, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    train(config(out, steps=30), source=data.pulled(data.corpus))
    text = generate(out, "the cat", max_tokens=40, temperature=0.8, top_k=20, seed=1)
    assert isinstance(text, str)
    assert text
    assert text == generate(out, "the cat", max_tokens=40, temperature=0.8, top_k=20, seed=1)
    greedy = generate(out, "the ", max_tokens=20, temperature=0)
    assert len(greedy) > 0
    assert json.loads((out / "config.json").read_text())["model"]["n_layer"] == 2
    assert os.path.exists(out / "tokenizer.json")
