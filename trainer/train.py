"""The training loop: verified shards → packed token sequences → a Transformer, resumably.

Data layout. Each optimizer step consumes ``world_size × grad_accum`` micro-batches; micro-batch
``j`` on rank ``r`` comes from *data stream* ``r × grad_accum + j`` (a :class:`ShardDataset`
over every ``world_size × grad_accum``-th shard). What a step trains on therefore depends only
on the global layout, not on how it is spread over processes: one process with
``grad_accum=2`` sees exactly the data two DDP ranks with ``grad_accum=1`` see.

Files in the run directory (only rank 0 writes): ``checkpoint.pt`` (model, optimizer, step,
RNG and data-stream state of every rank, provenance; replaced atomically), ``tokenizer.json``,
``metrics.jsonl`` (one JSON object per step or evaluation), ``config.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ostraca.client.source import ShardSource
from ostraca.client.torch import ShardDataset
from ostraca.protocol_spec import RevokedError

from .model import GPT, ModelConfig, preset
from .packing import Packer
from .schedule import lr_at
from .tokenizer import TOKENIZER_FILE, BPETokenizer, ByteTokenizer, Tokenizer, load_tokenizer

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
CHECKPOINT_FORMAT = "ostraca-checkpoint/1"


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

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        d["model"] = None if self.model is None else self.model.to_dict()
        return d


@dataclass
class TrainResult:
    step: int
    tokens: int
    losses: list[float] = field(default_factory=list)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    stopped: str | None = None
    """``None`` when the planned steps ran; ``"revoked"`` or ``"stop_after"`` otherwise."""
    message: str = ""
    checkpoint: Path | None = None
    tokens_per_s: float = 0.0
    data_wait_fraction: float = 0.0
    step_times: list[float] = field(default_factory=list)
    data_waits: list[float] = field(default_factory=list)
    peak_memory_bytes: int = 0
    model_config: ModelConfig | None = None
    num_params: int = 0


SourceArg = ShardSource | Callable[[], ShardSource]


# ── distributed helpers ─────────────────────────────────────────────────────────────────────
def _setup_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group ``torchrun`` describes (if any); return (rank, world size)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


def _gather(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _any_rank(flag: bool, world: int, device: torch.device) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


# ── RNG and files ───────────────────────────────────────────────────────────────────────────
def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def atomic_write_bytes(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temp file in the same folder, then ``os.replace`` it into place."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint without executing pickled code (``weights_only``)."""
    ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an Ostraca checkpoint")
    return ckpt


def _trim_metrics(path: Path, last_step: int) -> None:
    """On resume, drop metrics the interrupted run logged after its checkpoint."""
    if not path.exists():
        return
    keep = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= last_step
    ]
    text = "".join(f"{line}\n" for line in keep)
    atomic_write_bytes(path, lambda p: p.write_text(text))


# ── data ────────────────────────────────────────────────────────────────────────────────────
_END = object()


class _Prefetcher:
    """A thread that prepares step-batches (and the data state after each) ahead of the loop.

    Errors (a revoked grant, a digest mismatch) are delivered in order, at the step that would
    have needed the data, so the steps before it still run.
    """

    def __init__(self, packers: list[Packer], *, steps: int, depth: int) -> None:
        self._packers = packers
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(steps,), daemon=True)
        self._thread.start()

    def _put(self, obj: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(obj, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def _run(self, steps: int) -> None:
        try:
            for _ in range(steps):
                micro = [next(p) for p in self._packers]
                states = [p.state_dict() for p in self._packers]
                if not self._put((micro, states)):
                    return
        except BaseException as exc:  # handed to the training thread
            self._put(exc)
            return
        self._put(_END)

    def get(self) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[dict[str, Any]]]:
        obj = self._q.get()
        if isinstance(obj, BaseException):
            raise obj
        if obj is _END:
            raise RuntimeError("the data stream ended early")
        return obj  # type: ignore[no-any-return]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _open(source: SourceArg) -> ShardSource:
    if hasattr(source, "read_shards"):
        return cast(ShardSource, source)
    return source()


def _sample_texts(source: ShardSource, column: str, shards: list[int], limit: int) -> list[str]:
    out: list[str] = []
    for _, batch in source.read_shards(shards, columns=[column]):
        out.extend(t for t in batch.column(column).to_pylist() if t is not None)
        if len(out) >= limit:
            break
    return out[:limit]


def _make_tokenizer(
    cfg: TrainConfig, source: ShardSource, train_shards: list[int], rank: int, world: int
) -> Tokenizer:
    path = cfg.out_dir / TOKENIZER_FILE
    if cfg.resume and path.exists():
        return load_tokenizer(path)
    if cfg.tokenizer == "bytes":
        tok: Tokenizer = ByteTokenizer()
    elif cfg.tokenizer == "bpe":
        if rank == 0:
            texts = _sample_texts(source, cfg.text_column, train_shards, cfg.bpe_sample_docs)
            BPETokenizer.train(texts, vocab_size=cfg.bpe_vocab).save(path)
        if world > 1:
            dist.barrier()
        return load_tokenizer(path)
    else:
        raise ValueError(f"unknown tokenizer {cfg.tokenizer!r} (bytes or bpe)")
    if rank == 0:
        tok.save(path)
    return tok


def _streams(
    cfg: TrainConfig,
    source: ShardSource,
    shards: list[int],
    tok: Tokenizer,
    seq_len: int,
    rank: int,
    world: int,
) -> list[Packer]:
    n = world * cfg.grad_accum
    if len(shards) < n:
        raise ValueError(
            f"{len(shards)} training shard(s) cannot feed world_size × grad_accum = {n} data "
            "streams; use fewer processes or less accumulation, or publish smaller shards"
        )
    packers = []
    for j in range(cfg.grad_accum):
        ds = ShardDataset(
            source,
            columns=[cfg.text_column],
            shards=shards,
            seed=cfg.seed,
            block_rows=cfg.shuffle_block_rows,
            batch_rows=cfg.batch_rows,
            rank=rank * cfg.grad_accum + j,
            world_size=n,
        )
        packers.append(
            Packer(ds, tok, text_column=cfg.text_column, seq_len=seq_len, batch_size=cfg.batch_size)
        )
    return packers


def _provenance(
    source: ShardSource, shards_read: set[int], eval_shards: list[int], steps_done: int
) -> list[dict[str, Any]]:
    p = source.provenance
    read = sorted(shards_read | (set(eval_shards) if steps_done else set()))
    return [
        {
            "dataset": p.dataset,
            "version": p.version,
            "manifest_digest": p.manifest_digest,
            "license": p.license,
            "terms_sha256": p.terms_sha256,
            "grant_ids": [p.grant_id],
            "publisher": p.publisher,
            "shards_consumed": len(read),
            "shards": read,
        }
    ]


# ── evaluation ──────────────────────────────────────────────────────────────────────────────
@torch.no_grad()
def _evaluate(
    model: GPT,
    cfg: TrainConfig,
    source: ShardSource,
    shards: list[int],
    tok: Tokenizer,
    seq_len: int,
    rank: int,
    world: int,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
) -> tuple[float | None, bool]:
    """Mean loss over the held-out shards (every rank its share); (loss, revoked anywhere)."""
    total = torch.zeros(3, dtype=torch.float64, device=device)  # loss·n, n, revoked
    if rank < len(shards):
        ds = ShardDataset(
            source,
            columns=[cfg.text_column],
            shards=shards,
            shuffle=False,
            batch_rows=cfg.batch_rows,
            rank=rank,
            world_size=min(world, len(shards)),
        )
        packer = Packer(
            ds, tok, text_column=cfg.text_column, seq_len=seq_len, batch_size=cfg.batch_size
        )
        packer._epochs_left = 1
        model.eval()
        try:
            for _ in range(cfg.eval_batches):
                x, y = next(packer)
                with autocast():
                    _, loss = model(x.to(device), y.to(device))
                assert loss is not None
                total[0] += loss.double() * x.numel()
                total[1] += x.numel()
        except StopIteration:
            pass
        except RevokedError:
            total[2] = 1
        finally:
            model.train()
    if world > 1:
        dist.all_reduce(total)
    revoked = bool(total[2].item() > 0)
    if total[1].item() == 0:
        return None, revoked
    return float(total[0].item() / total[1].item()), revoked


# ── the loop ────────────────────────────────────────────────────────────────────────────────
def train(
    cfg: TrainConfig,
    *,
    source: SourceArg,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train on ``source`` (an opened :class:`ShardSource` or a callable that opens one).

    Under ``torchrun`` (or inside an initialised process group) every rank calls this with its
    own source; each reads only its own shards. Returns when ``cfg.steps`` (or
    ``cfg.stop_after``) steps are done, or — having saved a checkpoint — when the grant is
    revoked.
    """
    device = _pick_device(cfg.device)
    rank, world = _setup_distributed(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    say = (log or print) if rank == 0 else (lambda _msg: None)
    out = cfg.out_dir
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    if world > 1:
        dist.barrier()
    ckpt_path = out / CHECKPOINT_FILE
    ckpt = load_checkpoint(ckpt_path) if cfg.resume and ckpt_path.exists() else None
    if cfg.resume and ckpt is None:
        say(f"no checkpoint in {out}; starting from step 0")

    src = _open(source)
    n_shards = len(src.shard_rows)
    if cfg.eval_shards and n_shards - cfg.eval_shards < 1:
        raise ValueError(f"cannot hold out {cfg.eval_shards} of {n_shards} shard(s)")
    train_shards = list(range(n_shards - cfg.eval_shards))
    eval_shards = list(range(n_shards - cfg.eval_shards, n_shards))

    tok = _make_tokenizer(cfg, src, train_shards, rank, world)
    if ckpt is not None:
        mcfg = ModelConfig.from_dict(ckpt["model_config"])
    elif cfg.model is not None:
        mcfg = replace(cfg.model, vocab_size=max(cfg.model.vocab_size, tok.vocab_size))
    else:
        mcfg = preset(cfg.model_size, vocab_size=tok.vocab_size, seq_len=cfg.seq_len)
    seq_len = cfg.seq_len or mcfg.seq_len
    if seq_len > mcfg.seq_len:
        raise ValueError(f"seq_len {seq_len} exceeds the model's context {mcfg.seq_len}")

    torch.manual_seed(cfg.seed)
    model = GPT(mcfg).to(device)
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(
        model.optimizer_groups(cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95), fused=fused
    )
    packers = _streams(cfg, src, train_shards, tok, seq_len, rank, world)
    start, tokens = 0, 0
    if ckpt is not None:
        if (ckpt["world_size"], ckpt["grad_accum"]) != (world, cfg.grad_accum):
            raise ValueError(
                "resume needs the same world size and grad accumulation as the checkpoint "
                f"({ckpt['world_size']} × {ckpt['grad_accum']}); the data split depends on them"
            )
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start, tokens = int(ckpt["step"]), int(ckpt["tokens"])
        mine = ckpt["ranks"][rank]
        for packer, state in zip(packers, mine["streams"], strict=True):
            packer.load_state_dict(state)
        _set_rng_state(mine["rng"], device)
        if rank == 0:
            _trim_metrics(out / METRICS_FILE, start)
    if rank == 0:
        cfg_json = json.dumps({"train": cfg.to_json_dict(), "model": mcfg.to_dict()}, indent=2)
        atomic_write_bytes(out / CONFIG_FILE, lambda p: p.write_text(cfg_json + "\n"))

    runner: nn.Module = model
    if cfg.compile:
        runner = torch.compile(model)  # type: ignore[assignment]
    if world > 1:
        runner = DistributedDataParallel(
            runner, device_ids=[device.index] if device.type == "cuda" else None
        )

    def autocast() -> contextlib.AbstractContextManager[Any]:
        if device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    warmup = cfg.warmup if cfg.warmup is not None else min(100, cfg.steps // 10)
    end = cfg.steps if cfg.stop_after is None else min(cfg.steps, cfg.stop_after)
    per_step = world * cfg.grad_accum * cfg.batch_size * seq_len
    result = TrainResult(
        step=start, tokens=tokens, model_config=mcfg, num_params=model.num_params()
    )
    last_states = [p.state_dict() for p in packers]
    metrics_fh = (out / METRICS_FILE).open("a") if rank == 0 else None

    def save(step: int) -> None:
        gathered = _gather(
            {
                "streams": last_states,
                "rng": _rng_state(device),
                "shards": set().union(
                    *(
                        p.dataset.shards_read(s["dataset"])
                        for p, s in zip(packers, last_states, strict=True)
                    )
                ),
            },
            world,
        )
        if rank != 0:
            return
        read: set[int] = set().union(*(g["shards"] for g in gathered))
        obj = {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "tokens": result.tokens,
            "model_config": mcfg.to_dict(),
            "tokenizer": tok.name,
            "schedule": {"max_lr": cfg.lr, "warmup": warmup, "total": cfg.steps},
            "world_size": world,
            "grad_accum": cfg.grad_accum,
            "ranks": [{"streams": g["streams"], "rng": g["rng"]} for g in gathered],
            "provenance": _provenance(src, read, eval_shards, step),
        }
        atomic_write_bytes(ckpt_path, lambda p: torch.save(obj, p))
        result.checkpoint = ckpt_path

    def emit(record: dict[str, Any]) -> None:
        if metrics_fh is not None:
            metrics_fh.write(json.dumps(record) + "\n")
            metrics_fh.flush()

    progress = _Progress(enabled=cfg.progress and rank == 0, total=cfg.steps, start=start)
    prefetch = _Prefetcher(packers, steps=max(0, end - start), depth=cfg.prefetch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = start
    try:
        with progress:
            while step < end:
                t0 = time.perf_counter()
                revoked: RevokedError | None = None
                try:
                    micro, states = prefetch.get()
                except RevokedError as exc:
                    revoked = exc
                t_data = time.perf_counter() - t0
                if _any_rank(revoked is not None, world, device):
                    result.stopped = "revoked"
                    why = f": {revoked}" if revoked is not None else " (on another rank)"
                    result.message = (
                        f"access to {src.provenance.dataset} was revoked{why}. Stopped at the "
                        f"shard boundary after step {step}; checkpoint saved to {ckpt_path}. "
                        "Training may not continue on this dataset."
                    )
                    break
                lr = lr_at(
                    step,
                    max_lr=cfg.lr,
                    warmup=warmup,
                    total=cfg.steps,
                    min_ratio=cfg.min_lr_ratio,
                )
                for group in opt.param_groups:
                    group["lr"] = lr
                loss_sum = torch.zeros((), device=device)
                for j, (x, y) in enumerate(micro):
                    x = x.to(device, non_blocking=True)  # noqa: PLW2901
                    y = y.to(device, non_blocking=True)  # noqa: PLW2901
                    sync = j == len(micro) - 1 or world == 1
                    ctx = (
                        runner.no_sync()
                        if not sync and isinstance(runner, DistributedDataParallel)
                        else contextlib.nullcontext()
                    )
                    with ctx, autocast():
                        _, loss = runner(x, y)
                    assert loss is not None
                    loss = loss / cfg.grad_accum
                    loss.backward()
                    loss_sum += loss.detach()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                result.tokens += per_step
                last_states = states
                if world > 1:
                    dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
                dt = time.perf_counter() - t0
                result.step_times.append(dt)
                result.data_waits.append(t_data)
                if step % cfg.log_every == 0 or step == end:
                    loss_v = float(loss_sum.item())
                    result.losses.append(loss_v)
                    tps = per_step / dt
                    emit(
                        {
                            "step": step,
                            "loss": loss_v,
                            "lr": lr,
                            "grad_norm": float(grad_norm.item()),
                            "tokens": result.tokens,
                            "tokens_per_s": tps,
                            "data_wait": t_data / dt,
                            "step_time": dt,
                        }
                    )
                    progress.update(step, loss_v, tps, t_data / dt)
                    if not progress.shown and (step % max(1, cfg.steps // 10) == 0 or step == end):
                        # No live display (not a terminal): a plain line every tenth of the run.
                        say(
                            f"step {step}/{cfg.steps}  loss {loss_v:.4f}  {tps:,.0f} tokens/s  "
                            f"data wait {t_data / dt:.1%}"
                        )
                if cfg.eval_every and eval_shards and step % cfg.eval_every == 0:
                    ev, ev_revoked = _evaluate(
                        model, cfg, src, eval_shards, tok, seq_len, rank, world, device, autocast
                    )
                    if ev is not None:
                        result.eval_losses.append((step, ev))
                        emit({"step": step, "eval_loss": ev})
                        say(f"step {step}: eval loss {ev:.4f}")
                    if ev_revoked:
                        result.stopped = "revoked"
                        result.message = (
                            f"access to {src.provenance.dataset} was revoked during evaluation; "
                            f"stopped after step {step}; checkpoint saved to {ckpt_path}."
                        )
                        break
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < end:
                    save(step)
    except BaseException:
        if metrics_fh is not None:
            metrics_fh.close()
        raise
    finally:
        prefetch.close()
    if result.stopped is None and step < cfg.steps:
        result.stopped = "stop_after"
        result.message = f"stopped after step {step} of {cfg.steps}; resume with --resume"
    save(step)
    if metrics_fh is not None:
        metrics_fh.close()
    result.step = step
    times = result.step_times[1:] or result.step_times  # the first step pays for warm-up
    waits = result.data_waits[1:] or result.data_waits
    if times:
        result.tokens_per_s = per_step * len(times) / sum(times)
        result.data_wait_fraction = sum(waits) / sum(times)
    if device.type == "cuda":
        result.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
    if result.message:
        say(result.message)
    return result


class _Progress:
    """A rich progress bar with loss, tokens/s and data-wait share (rank 0 only)."""

    def __init__(self, *, enabled: bool, total: int, start: int) -> None:
        self._p: Any = None
        self._task: Any = None
        if enabled:
            from rich.progress import (  # noqa: PLC0415 - only when shown
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._p = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
            )
            self._task = self._p.add_task("train", total=total, completed=start, stats="")

    @property
    def shown(self) -> bool:
        """Whether a live display is on (else the loop prints plain progress lines)."""
        return self._p is not None

    def __enter__(self) -> _Progress:
        if self._p is not None:
            self._p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.stop()

    def update(self, step: int, loss: float, tps: float, wait: float) -> None:
        if self._p is not None:
            stats = f"loss {loss:.4f}  {tps:,.0f} tok/s  data-wait {wait:.0%}"
            self._p.update(self._task, completed=step, stats=stats)


def iter_metrics(run_dir: Path) -> Iterator[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl``."""
    path = run_dir / METRICS_FILE
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                yield json.loads(line)
