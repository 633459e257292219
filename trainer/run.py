"""A run's state on one rank, and how an invocation opens it: the settings (restored on
resume), the tokenizer, the model and optimizer, the data streams and, on resume, the checkpoint's
weights, data positions and RNG."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ostraca.client.source import ShardSource
from ostraca.protocol_spec import MalformedError

from .checkpoint import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    load_checkpoint,
    read_run_config,
    trim_metrics,
    write_run_config,
)
from .config import TrainConfig, resumed_config
from .data import SourceArg, make_tokenizer, open_source, train_streams
from .distributed import barrier
from .model import GPT, ModelConfig, preset
from .packing import Packer
from .tokenizer import Tokenizer


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The mean loss on the held-out shards after ``step``."""

    step: int
    loss: float
    """Nats per token."""
    loss_per_byte: float
    """Nats per byte of the held-out text: the summed loss over the UTF-8 bytes its tokens
    stand for (``loss / bytes_per_token``), comparable across tokenizers."""
    bytes_per_token: float
    tokens: int
    shards: tuple[int, ...]
    """The held-out shards (manifest indices), none of which training reads."""

    def record(self) -> dict[str, Any]:
        """Its line in ``metrics.jsonl``."""
        return {
            "step": self.step,
            "eval_loss": self.loss,
            "eval_loss_per_byte": self.loss_per_byte,
            "eval_bytes_per_token": self.bytes_per_token,
            "eval_tokens": self.tokens,
            "eval_shards": list(self.shards),
        }


@dataclass
class TrainResult:
    step: int
    tokens: int
    losses: list[float] = field(default_factory=list)
    evals: list[Evaluation] = field(default_factory=list)
    stopped: str | None = None
    """``None`` when the planned steps ran; ``"stop_after"`` when ``stop_after`` ended it."""
    message: str = ""
    checkpoint: Path | None = None
    tokens_per_s: float = 0.0
    data_wait_fraction: float = 0.0
    step_times: list[float] = field(default_factory=list)
    data_waits: list[float] = field(default_factory=list)
    peak_memory_bytes: int = 0
    model_config: ModelConfig | None = None
    num_params: int = 0

    @property
    def eval_losses(self) -> list[tuple[int, float]]:
        """(step, held-out nats per token) of each evaluation."""
        return [(e.step, e.loss) for e in self.evals]


@dataclass
class Run:
    """Everything one invocation of :func:`train` holds on one rank."""

    cfg: TrainConfig
    device: torch.device
    rank: int
    world: int
    src: ShardSource
    eval_shards: list[int]
    tok: Tokenizer
    token_bytes: torch.Tensor
    """Bytes of text per token id (``Tokenizer.byte_lengths``), on the device."""
    mcfg: ModelConfig
    seq_len: int
    model: GPT
    opt: torch.optim.Optimizer
    packers: list[Packer]
    result: TrainResult
    say: Callable[[str], None]
    states: list[dict[str, Any]]
    """The packers' states after the last step taken (what a checkpoint resumes from)."""
    reads: list[dict[str, Any]]
    """Their datasets' states after it (which shards had been read)."""
    eval_read: set[int] = field(default_factory=set)
    runner: nn.Module | None = None
    metrics: IO[str] | None = None

    @property
    def warmup(self) -> int:
        cfg = self.cfg
        return cfg.warmup if cfg.warmup is not None else min(100, cfg.steps // 10)

    @property
    def per_step(self) -> int:
        """Tokens per optimizer step, all ranks together."""
        return self.world * self.cfg.grad_accum * self.cfg.batch_size * self.seq_len

    @property
    def checkpoint_path(self) -> Path:
        return self.cfg.out_dir / CHECKPOINT_FILE

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def emit(self, record: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.write(json.dumps(record) + "\n")
            self.metrics.flush()


# ── RNG ─────────────────────────────────────────────────────────────────────────────────────
def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# ── opening a run ───────────────────────────────────────────────────────────────────────────
def _resume_from(
    cfg: TrainConfig, say: Callable[[str], None]
) -> tuple[TrainConfig, dict[str, Any] | None]:
    """On resume: the saved settings (conflicts refused) and the checkpoint, if there is one."""
    if not cfg.resume:
        return cfg, None
    saved = read_run_config(cfg.out_dir)
    if saved is not None:
        cfg = resumed_config(cfg, saved["train"], where=cfg.out_dir / CONFIG_FILE)
    path = cfg.out_dir / CHECKPOINT_FILE
    if not path.exists():
        say(f"no checkpoint in {cfg.out_dir}; starting from step 0")
        return cfg, None
    return cfg, load_checkpoint(path)


def _model_config(cfg: TrainConfig, ckpt: dict[str, Any] | None, tok: Tokenizer) -> ModelConfig:
    if ckpt is not None:
        return ModelConfig.from_dict(ckpt["model_config"])
    if cfg.model is not None:
        return replace(cfg.model, vocab_size=max(cfg.model.vocab_size, tok.vocab_size))
    return preset(cfg.model_size, vocab_size=tok.vocab_size, seq_len=cfg.seq_len)


def open_run(
    cfg: TrainConfig,
    source: SourceArg,
    *,
    rank: int,
    world: int,
    device: torch.device,
    say: Callable[[str], None],
) -> tuple[Run, dict[str, Any] | None]:
    if rank == 0:
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
    barrier(world)
    cfg, ckpt = _resume_from(cfg, say)
    src = open_source(source)
    n_shards = len(src.shard_rows)
    if cfg.eval_shards and n_shards - cfg.eval_shards < 1:
        raise MalformedError(f"cannot hold out {cfg.eval_shards} of {n_shards} shard(s)")
    train_shards = list(range(n_shards - cfg.eval_shards))
    tok = make_tokenizer(cfg, src, train_shards, rank, world)
    mcfg = _model_config(cfg, ckpt, tok)
    seq_len = cfg.seq_len or mcfg.seq_len
    if seq_len > mcfg.seq_len:
        raise MalformedError(f"seq_len {seq_len} exceeds the model's context {mcfg.seq_len}")
    torch.manual_seed(cfg.seed)
    model = GPT(mcfg).to(device)
    opt = torch.optim.AdamW(
        model.optimizer_groups(cfg.weight_decay),
        lr=cfg.lr,
        betas=(0.9, 0.95),
        fused=device.type == "cuda",
    )
    packers = train_streams(cfg, src, train_shards, tok, seq_len, rank, world)
    run = Run(
        cfg=cfg,
        device=device,
        rank=rank,
        world=world,
        src=src,
        eval_shards=list(range(n_shards - cfg.eval_shards, n_shards)),
        tok=tok,
        token_bytes=torch.from_numpy(tok.byte_lengths()).to(device),
        mcfg=mcfg,
        seq_len=seq_len,
        model=model,
        opt=opt,
        packers=packers,
        result=TrainResult(step=0, tokens=0, model_config=mcfg, num_params=model.num_params()),
        say=say,
        states=[p.state_dict() for p in packers],
        reads=[p.dataset.state_dict() for p in packers],
    )
    return run, ckpt


def restore(run: Run, ckpt: dict[str, Any]) -> None:
    """Continue from ``ckpt``: weights, optimizer, step, data streams, RNG."""
    if (ckpt["world_size"], ckpt["grad_accum"]) != (run.world, run.cfg.grad_accum):
        raise MalformedError(
            "resume needs the same world size and grad accumulation as the checkpoint "
            f"({ckpt['world_size']} × {ckpt['grad_accum']}); the data split depends on them"
        )
    (saved,) = ckpt["provenance"]
    if saved["manifest_digest"] != run.src.provenance.manifest_digest:
        raise MalformedError(
            f"the checkpoint was trained on {saved['dataset']}@{saved['version']}, not on "
            f"{run.src.provenance.dataset}@{run.src.provenance.version}: resume on the same data"
        )
    run.model.load_state_dict(ckpt["model"])
    run.opt.load_state_dict(ckpt["optimizer"])
    run.result.step, run.result.tokens = int(ckpt["step"]), int(ckpt["tokens"])
    mine = ckpt["ranks"][run.rank]
    for packer, state in zip(run.packers, mine["streams"], strict=True):
        packer.load_state_dict(state)
    run.states = list(mine["streams"])  # a restored packer's own state lacks its offset
    run.reads = mine.get("reads") or [s["dataset"] for s in run.states]
    run.eval_read = set(saved["shards"]) & set(run.eval_shards)
    _set_rng_state(mine["rng"], run.device)


def start(run: Run) -> None:
    """Rank 0 writes the settings and opens the metrics; every rank wraps its model."""
    cfg = run.cfg
    if run.rank == 0:
        if cfg.resume:
            trim_metrics(cfg.out_dir, run.result.step)
        write_run_config(cfg.out_dir, {"train": cfg.to_json_dict(), "model": run.mcfg.to_dict()})
        run.metrics = (cfg.out_dir / METRICS_FILE).open("a")
    runner: nn.Module = run.model
    if cfg.compile:
        runner = torch.compile(run.model)  # type: ignore[assignment]
    if run.world > 1:
        ids = [run.device.index] if run.device.type == "cuda" else None
        runner = DistributedDataParallel(runner, device_ids=ids)
    run.runner = runner
