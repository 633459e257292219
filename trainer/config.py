"""A run's settings, and how ``--resume`` restores them.

A run saves its settings in ``config.json``. Resuming takes every *run setting* (the data, the
model, the schedule, the split) from there: what a resumed run trains on and how cannot drift
with the command line. A run setting given again with another value is refused; settings of one
invocation (device, ``stop_after``, the display, how often to checkpoint or check the grant)
may change freely.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ostraca.protocol_spec import MalformedError

from .model import ModelConfig
from .revocation import DEFAULT_CHECK_SECONDS


@dataclass(frozen=True, slots=True)
class TrainConfig:
    out_dir: Path
    steps: int
    text_column: str = "text"
    model_size: str = "toy"
    model: ModelConfig | None = None
    """Overrides ``model_size`` (the vocabulary is still set from the tokenizer)."""
    batch_size: int = 8
    """Sequences per micro-batch on each rank."""
    seq_len: int | None = None
    """Tokens per sequence; default: the preset's context."""
    grad_accum: int = 1
    mix_batches: int = 1
    """Deal each micro-batch's rows from a window of this many micro-batches of consecutive
    text (``packing.py``), so that one micro-batch spans several documents."""
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int | None = None
    """Warm-up steps; default ``min(100, steps // 10)``."""
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 0
    """Evaluate every this many steps (0: never) on the held-out shards."""
    eval_shards: int = 0
    """How many shards (the last in manifest order) are held out of training for evaluation."""
    eval_batches: int = 8
    checkpoint_every: int = 0
    """Also checkpoint every this many steps (0: only at the end)."""
    stop_after: int | None = None
    """End this invocation after this step, with a checkpoint (a time-boxed job); the
    schedule still runs to ``steps``."""
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    tokenizer: str = "bytes"
    bpe_vocab: int = 4096
    bpe_sample_docs: int = 20_000
    shuffle_block_rows: int = 8192
    batch_rows: int = 512
    log_every: int = 1
    progress: bool = True
    resume: bool = False
    prefetch: int = 4
    """Step-batches prepared ahead by the data thread."""
    grant_check_every: float = DEFAULT_CHECK_SECONDS
    """Seconds between background checks of the grant with the registry (when there is one)."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise MalformedError(f"steps must be at least 1, got {self.steps}")
        if self.eval_every < 0 or self.eval_shards < 0:
            raise MalformedError("eval_every and eval_shards must not be negative")
        if self.eval_every and not self.eval_shards:
            raise MalformedError(
                f"evaluating every {self.eval_every} steps needs held-out shards, and none are "
                "held out: add --eval-shards N (or leave out --eval-every)"
            )
        if self.grant_check_every <= 0:
            raise MalformedError("the grant check interval must be positive")

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        d["model"] = None if self.model is None else self.model.to_dict()
        return d


PER_INVOCATION = frozenset(
    {
        "out_dir",
        "stop_after",
        "device",
        "compile",
        "progress",
        "resume",
        "prefetch",
        "log_every",
        "checkpoint_every",
        "grant_check_every",
    }
)
"""Settings that may differ between the invocations of one run."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resumed_settings(
    given: Mapping[str, Any],
    saved: Mapping[str, Any],
    *,
    explicit: Collection[str] | None = None,
    where: Path,
) -> dict[str, Any]:
    """``given`` (``TrainConfig`` fields by name) with the run settings of ``saved`` (what
    ``config.json`` holds under ``"train"``; ``where`` is that file, for the message).

    ``explicit`` names the settings given on purpose (``None``: all of ``given``); one of those
    that differs from its saved value raises :class:`MalformedError`.
    """
    out = dict(given)
    conflicts: list[str] = []
    for f in fields(TrainConfig):
        if f.name in PER_INVOCATION or f.name not in saved:
            continue
        value = saved[f.name]
        if f.name == "model" and value is not None:
            value = ModelConfig.from_dict(value)
        mine = explicit is None or f.name in explicit
        if f.name in given and given[f.name] != value and mine:
            conflicts.append(f"{_flag(f.name)} {given[f.name]} (saved: {value})")
        out[f.name] = value
    if conflicts:
        raise MalformedError(
            f"resuming with other settings than the run was started with ({where}): "
            f"{'; '.join(conflicts)}",
            hint="leave those flags out to keep the saved values, or train into a new --out",
        )
    return out


def resumed_config(cfg: TrainConfig, saved: Mapping[str, Any], *, where: Path) -> TrainConfig:
    """``cfg`` with its run settings checked against ``saved``: every one must agree."""
    given = {f.name: getattr(cfg, f.name) for f in fields(TrainConfig)}
    return TrainConfig(**resumed_settings(given, saved, where=where))
