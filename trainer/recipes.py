"""The demo's training recipe: what learns Python source well in a couple of CPU minutes.

A 0.8M-parameter body (the ``toy`` preset: 4 layers, 4 heads, 128 wide, tied embeddings, no
dropout) over a 2048-token byte-level BPE trained on the run's first training documents (about
3 bytes of Python per token, so each step sees three times the text a byte model would, for a
larger softmax); 32 sequences of 128 tokens a step, accumulated from 4 data streams over
different shards, each micro-batch's 8 sequences dealt from a window of 8 micro-batches of
consecutive text (``mix_batches``: cut in a row, 8 sequences come from one file, and with such
micro-batches the held-out loss after 225 steps was 1.72 nats/byte); AdamW at 3e-3 with a short
linear warm-up and a cosine decay to a tenth. Two shards — the last — are held out and evaluated
every quarter of the run; the held-out loss is reported per byte of text, so it compares with a
byte model's.
``bench/bench_trainer.py`` measures it (``bench/results/trainer.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .config import TrainConfig

DEMO_STEPS = 300
QUICK_STEPS = 60


def demo_config(
    out_dir: Path, *, quick: bool = False, steps: int | None = None, progress: bool = False
) -> TrainConfig:
    """The demo's run settings (``quick``: fewer steps, for ``ostraca demo --quick``)."""
    steps = steps or (QUICK_STEPS if quick else DEMO_STEPS)
    evals = 3 if quick else 4
    return TrainConfig(
        out_dir=out_dir,
        steps=steps,
        text_column="text",
        model_size="toy",
        seq_len=128,
        batch_size=8,
        grad_accum=4,
        mix_batches=8,
        lr=3e-3,
        warmup=min(30, steps // 6),
        min_lr_ratio=0.1,
        tokenizer="bpe",
        bpe_vocab=2048,
        bpe_sample_docs=300,
        eval_shards=2,
        eval_every=max(1, steps // evals),
        eval_batches=48,
        batch_rows=16,
        progress=progress,
    )


def demo_threads() -> int:
    """Intra-op threads for the demo: about as many as the machine has idle cores, at least one.

    A thread team waits at every operation for its slowest member, so on a busy machine two
    threads are far slower than one (on 2 cores at a load of 10, one step of the demo model took
    0.8–1.5 s on one thread and 5–10 s on two); on an idle one two are faster.
    """
    idle = (os.cpu_count() or 1) - os.getloadavg()[0]
    return max(1, min(torch.get_num_threads(), round(idle)))
