"""Learning-rate schedule: linear warm-up, then cosine decay to ``min_ratio × max_lr``."""

from __future__ import annotations

import math


def lr_at(step: int, *, max_lr: float, warmup: int, total: int, min_ratio: float = 0.1) -> float:
    """The learning rate for optimizer step ``step`` (0-based). A pure function of its inputs."""
    min_lr = max_lr * min_ratio
    if warmup > 0 and step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    span = max(1, total - warmup)
    progress = (step - warmup) / span  # 0 → 1 over the decay
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))
