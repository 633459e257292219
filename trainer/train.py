"""The training loop: verified shards → packed token sequences → a Transformer, resumably.

:func:`train` opens the run (``run.py``: settings, tokenizer, model, optimizer, data streams,
the checkpoint when resuming), then loops: take the step's data from the prefetch thread, take one
optimizer step (:func:`_train_step`), log it, evaluate (:func:`_evaluate`) and checkpoint
(:func:`_save`) when due. The data layout is in ``data.py``, the run folder's files in
``checkpoint.py``, the settings and their restoration on resume in ``config.py``.

Access is checked all along: a streamed source at every shard, and the grant every
``grant_check_every`` seconds in the background (``revocation.py``). When a grant is revoked or
expires the run stops within one step: it saves a checkpoint and raises the ``RevokedError``
(or ``ExpiredError``), whose message says where the checkpoint is.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import NoReturn

import torch
from torch.nn.parallel import DistributedDataParallel

from ostraca.client.stream import VerifiedDataset
from ostraca.protocol_spec import OstracaError, RevokedError

from .checkpoint import save_checkpoint
from .config import TrainConfig
from .data import Prefetcher, SourceArg, StepData, eval_stream, provenance, shards_read
from .distributed import (
    any_rank,
    gather,
    mean_over_ranks,
    pick_device,
    prepare_device,
    process_group,
    sum_over_ranks,
)
from .progress import ProgressBar
from .revocation import ACCESS_ENDED, GrantWatch, RegistryGrantCheck
from .run import Evaluation, Run, TrainResult, open_run, restore, rng_state, start
from .schedule import lr_at

__all__ = ["TrainConfig", "TrainResult", "train"]


# ── one step, an evaluation, a checkpoint ───────────────────────────────────────────────────
def _train_step(run: Run, step: int, data: StepData) -> tuple[torch.Tensor, float, torch.Tensor]:
    """One optimizer step on ``data``; returns (mean loss, learning rate, gradient norm)."""
    cfg, runner = run.cfg, run.runner
    assert runner is not None
    lr = lr_at(step, max_lr=cfg.lr, warmup=run.warmup, total=cfg.steps, min_ratio=cfg.min_lr_ratio)
    for group in run.opt.param_groups:
        group["lr"] = lr
    loss_sum = torch.zeros((), device=run.device)
    for j, (x, y) in enumerate(data.micro):
        sync = j == len(data.micro) - 1 or run.world == 1
        ctx = (
            runner.no_sync()
            if not sync and isinstance(runner, DistributedDataParallel)
            else contextlib.nullcontext()
        )
        with ctx, run.autocast():
            _, loss = runner(
                x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
            )
        assert loss is not None
        loss = loss / cfg.grad_accum
        loss.backward()
        loss_sum += loss.detach()
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.opt.step()
    run.opt.zero_grad(set_to_none=True)
    run.states, run.reads = data.states, data.reads
    run.result.tokens += run.per_step
    mean_over_ranks(loss_sum, run.world)
    return loss_sum, lr, grad_norm


def _log_step(
    run: Run,
    bar: ProgressBar,
    step: int,
    end: int,
    stats: tuple[torch.Tensor, float, torch.Tensor],
    times: tuple[float, float],
) -> None:
    """Record a step's figures; ``times`` is (step time, of which waiting for data)."""
    cfg, result = run.cfg, run.result
    dt, t_data = times
    result.step_times.append(dt)
    result.data_waits.append(t_data)
    if step % cfg.log_every and step != end:
        return
    loss_sum, lr, grad_norm = stats
    loss = float(loss_sum.item())
    result.losses.append(loss)
    tps = run.per_step / dt
    run.emit(
        {
            "step": step,
            "loss": loss,
            "lr": lr,
            "grad_norm": float(grad_norm.item()),
            "tokens": result.tokens,
            "tokens_per_s": tps,
            "data_wait": t_data / dt,
            "step_time": dt,
        }
    )
    bar.update(step, loss, tps, t_data / dt)
    if not bar.shown and (step % max(1, cfg.steps // 10) == 0 or step == end):
        # No live display (not a terminal): a plain line every tenth of the run.
        run.say(
            f"step {step}/{cfg.steps}  loss {loss:.4f}  {tps:,.0f} tokens/s  "
            f"data wait {t_data / dt:.1%}"
        )


def _ended_anywhere(ended: OstracaError | None, run: Run) -> OstracaError | None:
    """``ended`` if this rank saw access end, else another rank's news (every rank calls)."""
    if not any_rank(ended is not None, run.world, run.device):
        return None
    return ended or RevokedError("access ended, as another rank found")


@torch.no_grad()
def _evaluate(run: Run, step: int) -> Evaluation | None:
    """The loss over the held-out shards (every rank its share); raises when access ended."""
    cfg, device = run.cfg, run.device
    total = torch.zeros(3, dtype=torch.float64, device=device)  # summed loss, tokens, bytes
    ended: OstracaError | None = None
    packer = eval_stream(cfg, run.src, run.eval_shards, run.tok, run.seq_len, run.rank, run.world)
    if packer is not None:
        run.model.eval()
        try:
            for _ in range(cfg.eval_batches):
                x, y = next(packer)
                y = y.to(device)
                with run.autocast():
                    _, loss = run.model(x.to(device), y)
                assert loss is not None
                total[0] += loss.double() * y.numel()
                total[1] += y.numel()
                total[2] += run.token_bytes[y].sum()
        except StopIteration:
            pass
        except ACCESS_ENDED as exc:
            ended = exc
        finally:
            run.model.train()
            run.eval_read |= packer.dataset.shards_read()
    ended = _ended_anywhere(ended, run)
    if ended is not None:
        raise ended
    sum_over_ranks(total, run.world)
    nats, tokens, n_bytes = (float(v) for v in total.tolist())
    if tokens == 0:
        return None
    return Evaluation(
        step=step,
        loss=nats / tokens,
        loss_per_byte=nats / max(n_bytes, 1.0),
        bytes_per_token=n_bytes / tokens,
        tokens=int(tokens),
        shards=tuple(run.eval_shards),
    )


def _eval_step(run: Run, step: int) -> None:
    """Evaluate after ``step``, record and report it; stop the run when access ended."""
    try:
        ev = _evaluate(run, step)
    except ACCESS_ENDED as exc:
        _stop(run, step, exc)
    if ev is None:
        return
    run.result.evals.append(ev)
    run.emit(ev.record())
    run.say(
        f"step {step}: held-out loss {ev.loss_per_byte:.4f} nats/byte "
        f"({ev.loss:.4f} nats/token, {ev.bytes_per_token:.2f} bytes/token, "
        f"shards {list(ev.shards)})"
    )


def _save(run: Run, step: int) -> None:
    """Checkpoint after ``step`` (every rank calls: rank 0 writes what all of them hold)."""
    mine = {
        "streams": run.states,
        "reads": run.reads,
        "rng": rng_state(run.device),
        "train_read": shards_read(run.packers, run.reads),
        "eval_read": run.eval_read,
    }
    gathered = gather(mine, run.world)
    if run.rank != 0:
        return
    cfg = run.cfg
    train_read: set[int] = set().union(*(g["train_read"] for g in gathered))
    eval_read: set[int] = set().union(*(g["eval_read"] for g in gathered))
    save_checkpoint(
        run.checkpoint_path,
        {
            "model": run.model.state_dict(),
            "optimizer": run.opt.state_dict(),
            "step": step,
            "tokens": run.result.tokens,
            "model_config": run.mcfg.to_dict(),
            "tokenizer": run.tok.name,
            "schedule": {"max_lr": cfg.lr, "warmup": run.warmup, "total": cfg.steps},
            "world_size": run.world,
            "grad_accum": cfg.grad_accum,
            "ranks": [{k: g[k] for k in ("streams", "reads", "rng")} for g in gathered],
            "split": {"eval_shards": run.eval_shards, "train_shards_read": sorted(train_read)},
            "provenance": provenance(run.src, train_read | eval_read),
        },
    )
    run.result.checkpoint = run.checkpoint_path


def _stop(run: Run, step: int, ended: OstracaError) -> NoReturn:
    """Access ended: checkpoint, then raise the access error saying where the checkpoint is."""
    _save(run, step)
    raise type(ended)(
        f"access to {run.src.provenance.dataset} ended ({ended.message}); stopped after step "
        f"{step}, checkpoint saved to {run.checkpoint_path}",
        hint="training may not continue on this dataset",
    ) from ended


# ── the loop ────────────────────────────────────────────────────────────────────────────────
def _loop(run: Run, watch: GrantWatch | None) -> int:
    """Run the steps of this invocation; return the last step done."""
    cfg = run.cfg
    step = run.result.step
    end = cfg.steps if cfg.stop_after is None else min(cfg.steps, cfg.stop_after)
    bar = ProgressBar(enabled=cfg.progress and run.rank == 0, total=cfg.steps, start=step)
    prefetch = Prefetcher(run.packers, steps=max(0, end - step), depth=cfg.prefetch)
    try:
        with bar:
            while step < end:
                t0 = time.perf_counter()
                ended = None if watch is None else watch.ended
                data: StepData | None = None
                if ended is None:
                    try:
                        data = prefetch.get()
                    except ACCESS_ENDED as exc:
                        ended = exc
                t_data = time.perf_counter() - t0
                ended = _ended_anywhere(ended, run)
                if ended is not None:
                    _stop(run, step, ended)
                assert data is not None
                stats = _train_step(run, step, data)
                step += 1
                _log_step(run, bar, step, end, stats, (time.perf_counter() - t0, t_data))
                if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
                    _eval_step(run, step)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < end:
                    _save(run, step)
    finally:
        prefetch.close()
    return step


def _finish(run: Run, step: int) -> TrainResult:
    cfg, result = run.cfg, run.result
    if step < cfg.steps:
        result.stopped = "stop_after"
        result.message = f"stopped after step {step} of {cfg.steps}; resume with --resume"
    _save(run, step)
    result.step = step
    times = result.step_times[1:] or result.step_times  # the first step pays for warm-up
    waits = result.data_waits[1:] or result.data_waits
    if times:
        result.tokens_per_s = run.per_step * len(times) / sum(times)
        result.data_wait_fraction = sum(waits) / sum(times)
    if run.device.type == "cuda":
        result.peak_memory_bytes = int(torch.cuda.max_memory_allocated(run.device))
    if result.message:
        run.say(result.message)
    return result


def _watch(run: Run, grant_check: Callable[[], None] | None) -> GrantWatch | None:
    """Rank 0 watches the grant: with ``grant_check``, else through a streamed source's client."""
    if run.rank != 0:
        return None
    if grant_check is None and isinstance(run.src, VerifiedDataset):
        grant_check = RegistryGrantCheck(run.src.client, run.src)
    if grant_check is None:
        return None
    return GrantWatch(grant_check, interval=run.cfg.grant_check_every)


def train(
    cfg: TrainConfig,
    *,
    source: SourceArg,
    log: Callable[[str], None] | None = None,
    grant_check: Callable[[], None] | None = None,
) -> TrainResult:
    """Train on ``source`` (an opened :class:`ShardSource` or a callable that opens one).

    Under ``torchrun`` (or inside an initialised process group) every rank calls this with its
    own source; each reads only its own shards. ``grant_check`` (rank 0's; default: ask the
    registry a streamed source came from) runs every ``cfg.grant_check_every`` seconds in the
    background. Returns when ``cfg.steps`` (or ``cfg.stop_after``) steps are done. Raises
    ``RevokedError`` or ``ExpiredError`` — having saved a checkpoint — when access ends.
    """
    device = pick_device(cfg.device)
    prepare_device(device)
    with process_group(device) as (rank, world):
        say = (log or print) if rank == 0 else (lambda _msg: None)
        run, ckpt = open_run(cfg, source, rank=rank, world=world, device=device, say=say)
        if ckpt is not None:
            restore(run, ckpt)
        start(run)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            watch = _watch(run, grant_check)
            with watch or contextlib.nullcontext():
                step = _loop(run, watch)
            return _finish(run, step)
        finally:
            if run.metrics is not None:
                run.metrics.close()
