"""Sampling from a trained run: temperature and top-k."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 - the customary name

from .checkpoint import CHECKPOINT_FILE, load_checkpoint
from .model import GPT, ModelConfig
from .tokenizer import TOKENIZER_FILE, Tokenizer, load_tokenizer


def load_run(run: Path, *, device: str = "cpu") -> tuple[GPT, Tokenizer]:
    """The model (eval mode) and tokenizer of a run folder."""
    ckpt = load_checkpoint(run / CHECKPOINT_FILE)
    model = GPT(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, load_tokenizer(run / TOKENIZER_FILE)


@torch.no_grad()
def sample(
    model: GPT,
    idx: torch.Tensor,
    *,
    max_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    stop_token: int | None = None,
    vocab_size: int | None = None,
) -> torch.Tensor:
    """Extend ``idx`` (B, T) by up to ``max_tokens`` tokens; temperature 0 is greedy.

    ``vocab_size``: the tokenizer's; ids above it (the model's padding) are never sampled.
    """
    for _ in range(max_tokens):
        ctx = idx[:, -model.cfg.seq_len :]  # (B, ≤ context)
        logits, _ = model(ctx)
        logits = logits[:, -1, :].float()  # (B, V)
        if vocab_size is not None:
            logits[:, vocab_size:] = float("-inf")
        if temperature <= 0:
            nxt = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        else:
            logits = logits / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        idx = torch.cat([idx, nxt], dim=1)
        if stop_token is not None and bool((nxt == stop_token).all()):
            break
    return idx


def generate(
    run: Path,
    prompt: str,
    *,
    max_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 50,
    seed: int = 0,
    device: str = "cpu",
    stop_at_eos: bool = False,
) -> str:
    """Text the run's model writes after ``prompt`` (the prompt not included); document
    boundaries (EOS) show as newlines unless ``stop_at_eos`` ends the text there."""
    model, tok = load_run(run, device=device)
    ids = tok.encode(prompt) or [tok.eos_id]
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = sample(
        model,
        idx,
        max_tokens=max_tokens,
        temperature=temperature,
        top_k=top_k,
        generator=gen,
        stop_token=tok.eos_id if stop_at_eos else None,
        vocab_size=tok.vocab_size,
    )
    new: list[int] = out[0, len(ids) :].tolist()
    docs: list[list[int]] = [[]]
    for t in new:
        if t == tok.eos_id:
            docs.append([])
        else:
            docs[-1].append(t)
    if stop_at_eos and not docs[-1]:
        docs.pop()
    return "\n".join(tok.decode(d) for d in docs)
