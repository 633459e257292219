"""A small decoder-only Transformer (GPT-2 shaped, pre-norm), readable in one file.

Shapes: ``B`` batch, ``T`` sequence length, ``C`` = ``n_embd``, ``H`` heads, ``D`` = ``C / H``,
``V`` vocabulary (padded up to a multiple of 64 so the matmuls tile well).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the customary name
from torch import nn


@dataclass(frozen=True, slots=True)
class ModelConfig:
    vocab_size: int = 320
    seq_len: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    mlp_ratio: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError("n_embd must be a multiple of n_head")

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> ModelConfig:
        return cls(**obj)

    def non_embedding_params(self) -> int:
        """Parameters outside the token/position embeddings (the ``N`` of ``6·N·tokens``)."""
        c = self.n_embd
        per_block = 4 * c * c + 2 * self.mlp_ratio * c * c + 2 * c  # attn, mlp, two norms
        return self.n_layer * per_block + c  # + final norm

    def flops_per_token(self) -> int:
        """Training FLOPs per token: ``6·N`` plus attention's ``12·L·H·D·T`` (PaLM's estimate).

        ``N`` counts every weight used in the matmuls, the tied LM head included.
        """
        n = self.non_embedding_params() + self.vocab_size * self.n_embd
        return 6 * n + 12 * self.n_layer * self.n_embd * self.seq_len


PRESETS: dict[str, ModelConfig] = {
    # ~0.8M parameters with the byte vocabulary: seconds per hundred steps on a CPU.
    "toy": ModelConfig(n_layer=4, n_head=4, n_embd=128, seq_len=128),
    # ~11M: a CPU can still learn something in minutes.
    "mini": ModelConfig(n_layer=6, n_head=6, n_embd=384, seq_len=256),
    # ~100M non-embedding parameters: the GPU benchmark's size.
    "100m": ModelConfig(n_layer=14, n_head=12, n_embd=768, seq_len=1024),
    # GPT-2 small's shape (124M with GPT-2's 50257-token vocabulary; ~85M with bytes).
    "gpt2-small": ModelConfig(n_layer=12, n_head=12, n_embd=768, seq_len=1024),
}


def padded_vocab(vocab_size: int, multiple: int = 64) -> int:
    return -(-vocab_size // multiple) * multiple


def preset(name: str, *, vocab_size: int, seq_len: int | None = None) -> ModelConfig:
    """A preset's shape with the tokenizer's (padded) vocabulary and, optionally, a context."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model size {name!r}; choose from {', '.join(PRESETS)}") from None
    return replace(base, vocab_size=padded_vocab(vocab_size), seq_len=seq_len or base.seq_len)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape  # (B, T, C)
        q, k, v = self.qkv(x).split(c, dim=2)  # 3 × (B, T, C)
        q = q.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # (B, H, T, D)
        k = k.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # (B, H, T, D)
        v = v.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # (B, H, T, D)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(b, t, c)  # (B, T, C)
        return self.proj(y)  # type: ignore[no-any-return]


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.up = nn.Linear(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd, bias=False)
        self.down = nn.Linear(cfg.mlp_ratio * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x), approximate="tanh"))  # type: ignore[no-any-return]


class Block(nn.Module):
    """Pre-norm residual block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.norm2 = nn.RMSNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))  # (B, T, C)
        return x + self.mlp(self.norm2(x))  # type: ignore[no-any-return]


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)  # token → vector
        self.wpe = nn.Embedding(cfg.seq_len, cfg.n_embd)  # position → vector
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.RMSNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        self.apply(self._init)
        # GPT-2: scale the residual projections by 1/sqrt(2·L) so the residual stream's
        # variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Unique parameters (the tied head counted once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``idx`` (B, T) token ids → logits (B, T, V), and the mean cross-entropy if given
        ``targets`` (B, T)."""
        _, t = idx.shape
        if t > self.cfg.seq_len:
            raise ValueError(f"sequence of {t} tokens exceeds the context of {self.cfg.seq_len}")
        pos = torch.arange(t, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)  # (B, T, C)
        logits = self.lm_head(self.norm(x))  # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def optimizer_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Decay matrices (and the embeddings); not norms' gains."""
        decay = [p for p in self.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.dim() < 2]
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
