"""Tokenizers, packing state, the schedule, the model's presets, and the trainer CLI."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest
import torch
import typer
from typer.testing import CliRunner

from ostraca.client.stream import parse_ref
from ostraca.client.torch import ShardDataset
from ostraca.protocol_spec import MalformedError, PublicKey, SigningKey
from ostraca.trainer.cli import register_trainer_commands
from ostraca.trainer.model import GPT, PRESETS, ModelConfig, preset
from ostraca.trainer.packing import Packer
from ostraca.trainer.schedule import lr_at
from ostraca.trainer.tokenizer import BPETokenizer, ByteTokenizer, load_tokenizer
from ostraca.trainer.train import TrainConfig, train

from .trainer_testlib import TrainerData, corpus

TEXTS = ["héllo wörld ✓", "", "second\ndoc", "日本語のテキスト"]


def test_byte_tokenizer_round_trips_a_column_exactly() -> None:
    tok = ByteTokenizer()
    col = pa.array([*TEXTS, None], pa.string()).slice(0)
    ids = tok.encode_column(col)
    expected: list[int] = []
    for t in TEXTS:
        expected += [*t.encode(), tok.eos_id]
    assert ids.tolist() == expected
    assert ids.tolist() == tok.encode_column(pa.array(TEXTS, pa.large_string())).tolist()
    sliced = pa.array(TEXTS, pa.string()).slice(1, 2)  # offsets that do not start at zero
    assert tok.encode_column(sliced).tolist() == [tok.eos_id, *TEXTS[2].encode(), tok.eos_id]
    for t in TEXTS:
        assert tok.decode(tok.encode(t)) == t


def test_bpe_trains_locally_saves_and_round_trips(tmp_path: Path) -> None:
    tok = BPETokenizer.train(corpus(500), vocab_size=300)
    assert 257 < tok.vocab_size <= 300
    tok.save(tmp_path / "tokenizer.json")
    again = load_tokenizer(tmp_path / "tokenizer.json")
    text = "the cat sat on the mat."
    assert again.encode(text) == tok.encode(text)
    assert again.decode(again.encode(text)) == text
    ids = again.encode_column(pa.array([text, text]))
    assert ids.tolist().count(again.eos_id) == 2
    assert len(ids) < 2 * len(text)  # merges learned: fewer tokens than bytes


@pytest.mark.parametrize("mix", [1, 4])
def test_packer_resumes_token_for_token(data: TrainerData, mix: int) -> None:
    source = data.pulled(data.small)  # 150 documents

    def packer() -> Packer:
        ds = ShardDataset(source, columns=["text"], seed=1, block_rows=30, batch_rows=8)
        return Packer(ds, ByteTokenizer(), text_column="text", seq_len=32, batch_size=3, mix=mix)

    full = packer()
    batches = [next(full) for _ in range(80)]  # ~7.9k tokens: past the ~6k-token epoch
    assert full.dataset.epoch >= 1
    for cut in (1, 7, 25, 70):
        p = packer()
        for _ in range(cut):
            next(p)
        state = json.loads(json.dumps(p.state_dict()))  # state is plain JSON
        q = packer()
        q.load_state_dict(state)
        for x, y in batches[cut:]:
            qx, qy = next(q)
            assert torch.equal(qx, x)
            assert torch.equal(qy, y)
    x, y = batches[0]
    assert x.shape == y.shape == (3, 32)
    assert torch.equal(x[:, 1:], y[:, :-1])
    # Mixing deals out the rows one unmixed batch of 3 × mix rows holds: batch j of the window
    # gets its rows j, j + mix, j + 2·mix.
    ds = ShardDataset(source, columns=["text"], seed=1, block_rows=30, batch_rows=8)
    plain = Packer(ds, ByteTokenizer(), text_column="text", seq_len=32, batch_size=3 * mix)
    px, py = next(plain)
    for j, (x, y) in enumerate(batches[:mix]):
        assert torch.equal(x, px[j::mix])
        assert torch.equal(y, py[j::mix])


def test_schedule_warms_up_then_decays() -> None:
    lrs = [lr_at(s, max_lr=1.0, warmup=10, total=100, min_ratio=0.1) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[55] == pytest.approx(0.55)
    assert lrs[100] == lrs[119] == pytest.approx(0.1)


def test_presets_span_toy_to_gpt2_small() -> None:
    toy = GPT(preset("toy", vocab_size=257))
    assert 0.5e6 < toy.num_params() < 1.5e6
    assert 95e6 < PRESETS["100m"].non_embedding_params() < 105e6
    gpt2 = replace(PRESETS["gpt2-small"], vocab_size=50304)
    total = gpt2.non_embedding_params() + gpt2.vocab_size * gpt2.n_embd + gpt2.seq_len * 768
    assert 123e6 < total < 126e6  # GPT-2 small's 124M
    assert toy.lm_head.weight is toy.wte.weight
    logits, loss = toy(torch.zeros(2, 16, dtype=torch.long), torch.zeros(2, 16, dtype=torch.long))
    assert logits.shape == (2, 16, 320)
    assert loss is not None
    with pytest.raises(ValueError, match="unknown model size"):
        preset("huge", vocab_size=257)


def test_dataset_refs_parse() -> None:
    assert parse_ref("acme/corpus") == ("acme/corpus", None)
    assert parse_ref("acme/corpus@latest") == ("acme/corpus", None)
    assert parse_ref("acme/corpus@3") == ("acme/corpus", 3)
    for bad in ("acme/corpus@x", "acme/corpus@0", "Acme corpus"):
        with pytest.raises(MalformedError):
            parse_ref(bad)


def test_cli_generate_attest_and_verify(data: TrainerData, tmp_path: Path) -> None:
    source = data.pulled(data.small)
    run = tmp_path / "run"
    cfg = TrainConfig(
        out_dir=run,
        steps=2,
        model=ModelConfig(n_layer=1, n_head=2, n_embd=32, seq_len=32),
        batch_size=2,
        progress=False,
    )
    train(cfg, source=source, log=None)
    app = typer.Typer()
    register_trainer_commands(app)
    runner = CliRunner()
    key_path = tmp_path / "home" / "identity.pem"
    key_path.parent.mkdir()
    key = SigningKey.from_seed(b"\x01" * 32)
    key_path.write_bytes(key.to_pem())
    key_path.chmod(0o600)
    pub = tmp_path / "home" / "identity.pub.json"
    pub.write_text(json.dumps(PublicKey.from_verify_key(key.public).model_dump()))
    env = {"OSTRACA_HOME": str(tmp_path / "home")}

    r = runner.invoke(app, ["generate", str(run), "--prompt", "the", "--max-tokens", "5"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("the")
    r = runner.invoke(app, ["attest", str(run)], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["verify-attestation", str(run)], env=env)
    assert r.exit_code == 0, r.output
    assert "verified" in r.output
    assert source.provenance.manifest_digest in r.output
    other = SigningKey.from_seed(b"\x02" * 32).public.b64
    r = runner.invoke(app, ["verify-attestation", str(run), "--trainer-key", other], env=env)
    assert r.exit_code == 1
    assert "untrusted_key" in r.output
