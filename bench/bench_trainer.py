"""The demo's training on CPU, and what the background revocation check costs it.

(a) **The demo model through the real trainer**: the demo's recipe (``trainer/recipes.py``)
    trained from a verified stream of the demo's corpus (the quick demo's 150 files) on a local
    registry: tokens/s, median step time, data wait, and the held-out loss per byte.
(b) **The grant check's cost**: the demo model's optimizer step (same shape, same micro-batches,
    synthetic tokens, so the data pipeline adds no noise) with a :class:`GrantWatch` asking the
    same registry about the grant every second, against the same steps with no watch. Blocks of
    steps alternate (off, on, on, off, …) in one run so that a change in machine load hits both
    alike; the table gives steps/s over all blocks and the median step time of each.

    .venv/bin/python bench/bench_trainer.py [--steps 60] [--rounds 6] [--block 15]

Writes bench/results/trainer.json and bench/results/trainer.md. Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from ostraca.cli.demo import DATASET, TERMS, Actor, make_actor, stdlib_corpus
from ostraca.client.publish import publish
from ostraca.client.stream import VerifiedDataset, open_dataset
from ostraca.protocol_spec import utc_now
from ostraca.server.process import registry_process
from ostraca.trainer.model import GPT, preset
from ostraca.trainer.recipes import demo_config, demo_threads
from ostraca.trainer.revocation import GrantWatch, RegistryGrantCheck
from ostraca.trainer.train import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results"
CHECK_EVERY = 1.0
TARGET = 0.01


def _granted(root: Path, url: str) -> Actor:
    """Publish the quick demo's corpus and grant a researcher; return the researcher."""
    inst = make_actor(root / "inst", url, "Python Software Foundation", "institution", "PSF")
    res = make_actor(root / "res", url, "Ada Researcher", "researcher", "Uni")
    inst.client.create_namespace("psf")
    table, _ = stdlib_corpus(max_files=150)
    publish(
        inst.client,
        table,
        dataset=DATASET,
        license="PSF-2.0",
        terms=TERMS,
        shard_bytes=128 * 1024,
        chunk_bytes=64 * 1024,
        progress=False,
    )
    detail = res.client.get_dataset(DATASET)
    request = res.client.request_access(DATASET, purpose="bench", terms_sha256=detail.terms_sha256)
    inst.client.approve(request.request_id, expires=utc_now() + timedelta(days=1))
    inst.client.close()
    return res


def _trainer_run(cfg: TrainConfig, source: VerifiedDataset) -> dict[str, Any]:
    result = train(cfg, source=source, log=lambda _msg: None)
    times = result.step_times[1:]
    last = result.evals[-1]
    return {
        "steps": result.step,
        "tokens_per_step": result.tokens // result.step,
        "tokens_per_s": result.tokens_per_s,
        "median_step_s": statistics.median(times),
        "data_wait_fraction": result.data_wait_fraction,
        "params": result.num_params,
        "held_out_loss_per_byte": last.loss_per_byte,
        "held_out_loss_per_token": last.loss,
        "held_out_bytes_per_token": last.bytes_per_token,
        "held_out_shards": list(last.shards),
    }


def _step_fn(cfg: TrainConfig) -> Callable[[], None]:
    """One optimizer step of the demo's model on fixed synthetic micro-batches."""
    mcfg = preset(cfg.model_size, vocab_size=cfg.bpe_vocab, seq_len=cfg.seq_len)
    torch.manual_seed(0)
    model = GPT(mcfg)
    opt = torch.optim.AdamW(model.optimizer_groups(cfg.weight_decay), lr=1e-3)
    seq = cfg.seq_len or mcfg.seq_len
    data = torch.randint(0, cfg.bpe_vocab, (cfg.grad_accum, cfg.batch_size, seq + 1))
    micro = [(rows[:, :-1].contiguous(), rows[:, 1:].contiguous()) for rows in data]

    def step() -> None:
        for x, y in micro:
            _, loss = model(x, y)
            assert loss is not None
            (loss / cfg.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


class _TimedCheck:
    """The registry check, counting its calls, their time and the CPU time of their thread."""

    def __init__(self, check: RegistryGrantCheck) -> None:
        self._check = check
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []

    def __call__(self) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        self._check()
        self.seconds.append(time.perf_counter() - t0)
        self.cpu_seconds.append(time.thread_time() - c0)


def _children_cpu() -> float:
    """CPU seconds of this process's children (the registry) so far (Linux ``/proc``)."""
    pid = os.getpid()
    total = 0
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _check_cost(cfg: TrainConfig, check: _TimedCheck, *, rounds: int, block: int) -> dict[str, Any]:
    step = _step_fn(cfg)
    for _ in range(3):  # warm-up
        step()
    times: dict[str, list[float]] = {"off": [], "on": []}
    cpu = {"off": 0.0, "on": 0.0}  # this process's CPU seconds in each mode's blocks
    registry_cpu = {"off": 0.0, "on": 0.0}
    for r in range(rounds):
        for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
            watch = GrantWatch(check, interval=CHECK_EVERY) if mode == "on" else None
            c0, r0 = time.process_time(), _children_cpu()
            with watch or contextlib.nullcontext():
                for _ in range(block):
                    t0 = time.perf_counter()
                    step()
                    times[mode].append(time.perf_counter() - t0)
            cpu[mode] += time.process_time() - c0
            registry_cpu[mode] += _children_cpu() - r0
    rate = {m: len(t) / sum(t) for m, t in times.items()}
    check_cpu = sum(check.cpu_seconds) + max(0.0, registry_cpu["on"] - registry_cpu["off"])
    return {
        "check_every_s": CHECK_EVERY,
        "rounds": rounds,
        "steps_per_block": block,
        "steps_per_s": rate,
        "median_step_s": {m: statistics.median(t) for m, t in times.items()},
        "slowdown": 1 - rate["on"] / rate["off"],
        "checks": len(check.seconds),
        "median_check_s": statistics.median(check.seconds) if check.seconds else None,
        "check_cpu_s": check_cpu,
        "check_cpu_share": check_cpu / (cpu["on"] - sum(check.cpu_seconds)),
    }


def _markdown(out: dict[str, Any]) -> str:
    a, b = out["trainer"], out["grant_check"]
    rate, median = b["steps_per_s"], b["median_step_s"]
    verdict = "met" if b["slowdown"] < TARGET else "NOT met"
    return "\n".join(
        [
            "# The demo's training on CPU",
            "",
            f"{out['machine']}; torch {out['torch']}, {out['threads']} threads; "
            f"load average at the start {out['load_before']:.2f}. "
            "Written by `bench/bench_trainer.py`.",
            "",
            "## (a) The demo model through the real trainer",
            "",
            f"{a['params']:,} parameters, {a['tokens_per_step']:,} tokens a step, "
            f"{a['steps']} steps from a verified stream of the quick demo's corpus.",
            "",
            "| tokens/s | median step | data wait | held-out loss |",
            "| ---: | ---: | ---: | ---: |",
            f"| {a['tokens_per_s']:,.0f} | {a['median_step_s'] * 1e3:.0f} ms "
            f"| {a['data_wait_fraction']:.1%} | {a['held_out_loss_per_byte']:.3f} nats/byte "
            f"({a['held_out_loss_per_token']:.3f} nats/token, "
            f"{a['held_out_bytes_per_token']:.2f} bytes/token, shards {a['held_out_shards']}) |",
            "",
            f"## (b) The background grant check, every {b['check_every_s']:.0f} s",
            "",
            f"{b['rounds']} rounds of {b['steps_per_block']} steps each way, interleaved; "
            f"{b['checks']} checks against the local registry "
            f"(median {(b['median_check_s'] or 0) * 1e3:.1f} ms each, on their own thread).",
            "",
            "| | steps/s | median step |",
            "| --- | ---: | ---: |",
            f"| no check | {rate['off']:.3f} | {median['off'] * 1e3:.1f} ms |",
            f"| check every 1 s | {rate['on']:.3f} | {median['on'] * 1e3:.1f} ms |",
            "",
            f"Slowdown in steps/s {b['slowdown']:+.2%} (target < {TARGET:.0%}: {verdict}). "
            f"The checks took {b['check_cpu_s']:.2f} CPU seconds (their thread, and the "
            f"registry answering them): {b['check_cpu_share']:.2%} of the CPU the steps took "
            "meanwhile — what they cost a step on a machine with no idle core; with one idle "
            "they run beside the steps.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60, help="steps of the trainer run (a)")
    parser.add_argument("--rounds", type=int, default=6, help="off/on rounds of (b)")
    parser.add_argument("--block", type=int, default=15, help="steps per block in (b)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    torch.set_num_threads(demo_threads())  # as the demo does
    with tempfile.TemporaryDirectory(prefix="ostraca-bench-trainer-") as tmp:
        root = Path(tmp)
        with registry_process(root / "registry") as url:
            res = _granted(root, url)
            cfg = demo_config(root / "run", steps=args.steps)
            with open_dataset(DATASET, client=res.client) as source:
                trainer = _trainer_run(cfg, source)
                check = _TimedCheck(RegistryGrantCheck(res.client, source))
                cost = _check_cost(cfg, check, rounds=args.rounds, block=args.block)
            res.client.close()
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_before": load_before,
        "trainer": trainer,
        "grant_check": cost,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "trainer.json").write_text(json.dumps(out, indent=2) + "\n")
    text = _markdown(out)
    (RESULTS / "trainer.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
