"""One measurement in a fresh process: ``python -m bench.peers.run --out F --config JSON``.

The config names a ``system``, a ``scenario`` and where the data is. Scenarios:

- ``epoch``: read one epoch, summing every token (the consumer touches every byte it is handed,
  the same work for every system); time to first batch, samples/tokens/bytes, elapsed. With
  ``verify`` every delivered row is checked against the deterministic generator (corruption test).
  With ``stop_after``/``state_out`` it stops at that many samples and saves the loader's state;
  with ``state_in`` it resumes from one and records the latency to the first resumed sample.
  With ``ids_out`` the delivered ``sample_id`` order is written (resume check, coverage).
- ``ranks``: one of 2 ranks (gloo on loopback), DataLoader with 2 workers; writes the ids.
- ``train``: a tiny CPU Transformer fed by the loader; data-stall fraction.

The result is one JSON object written to ``--out``; errors are reported there, not raised.
"""

# Imports inside functions are deliberate: each measurement process loads only the system it
# measures (peer libraries, torch, Ostraca), and the orchestrator runs without them.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

T_START = time.perf_counter()

import numpy as np  # noqa: E402

with contextlib.suppress(ImportError):
    # pyarrow imports pandas lazily on its first to_numpy (~0.2 s): pay that before any timing
    import pandas  # type: ignore[import-untyped]  # noqa: F401

from bench.peers.common import SEQ_LEN, tokens_for  # noqa: E402

Batch = tuple[np.ndarray, Any, int]


def cpu_now() -> float:
    """CPU seconds of this process (all threads) and its reaped children (curl pipes)."""
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf(
            "SC_PAGE_SIZE"
        )  # (sample ids, tokens [n, L] / texts, payload bytes)


def _items(system: Any, cfg: dict[str, Any]) -> Iterator[Batch]:
    yield from system.iterate(cfg)


def scenario_epoch(system: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    verify = bool(cfg.get("verify"))
    stop_after = cfg.get("stop_after")
    ids_out = cfg.get("ids_out")
    if cfg.get("state_in"):
        cfg["state"] = json.loads(Path(cfg["state_in"]).read_text())
    t_open = cfg["_t_open"]
    it = system.iterate(cfg)
    first = None
    n = ntok = nbytes = 0
    bad_rows = 0
    ids_seen: list[np.ndarray] = []
    checked = 0
    touch = cfg["kind"] == "tokens"
    checksum = 0
    for ids, payload, size in it:
        if first is None:
            first = time.perf_counter()
        if touch:  # the consumer reads every token, as a trainer would (same for every system)
            checksum += int(np.add.reduce(np.asarray(payload).reshape(-1), dtype=np.int64))
        n += len(ids)
        nbytes += size
        if cfg["kind"] == "tokens":
            ntok += len(ids) * SEQ_LEN
        if ids_out is not None:
            ids_seen.append(np.asarray(ids, dtype=np.int64))
        if verify and cfg["kind"] == "tokens":
            arr = np.asarray(payload).reshape(len(ids), SEQ_LEN)
            expect = tokens_for(np.asarray(ids, dtype=np.int64))
            bad_rows += int((arr != expect).any(axis=1).sum())
            checked += len(ids)
        if stop_after is not None and n >= stop_after:
            break
    end = time.perf_counter()
    out: dict[str, Any] = {
        "cpu_s": cpu_now() - cfg["_cpu_open"],
        "rss_at_open": cfg["_rss_open"],
        "import_s": t_open - T_START,
        "ttfb_s": (first - t_open) if first is not None else None,
        "elapsed_s": end - t_open,
        "samples": n,
        "tokens": ntok,
        "bytes": nbytes,
    }
    out["token_sum"] = checksum
    if verify:
        out["rows_checked"] = checked
        out["bad_rows"] = bad_rows
    if stop_after is not None and cfg.get("state_out"):
        state = system.state_dict(n)
        Path(cfg["state_out"]).write_text(json.dumps(state))
    if ids_out is not None:
        all_ids = np.concatenate(ids_seen) if ids_seen else np.zeros(0, np.int64)
        np.save(ids_out, all_ids)
    return out


def scenario_ranks(system: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        t_open = cfg["_t_open"]
        ids = system.rank_ids(cfg, rank=rank, world=world, workers=int(cfg.get("workers", 2)))
        elapsed = time.perf_counter() - t_open
        np.save(cfg["ids_out"], np.asarray(ids, dtype=np.int64))
        return {"samples": len(ids), "elapsed_s": elapsed, "rank": rank}
    finally:
        dist.destroy_process_group()


def scenario_train(system: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """Tiny decoder (2 layers, d=64, 128-token windows, vocab 1,024, batch 16) on one thread;
    stall = time waiting for the next batch / total time (first batch excluded)."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    vocab, seq, batch, d = 1024, 128, 16, 64

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(vocab, d)
            self.pos = nn.Parameter(torch.zeros(seq, d))
            layer = nn.TransformerEncoderLayer(
                d, 2, 4 * d, dropout=0.0, batch_first=True, norm_first=True
            )
            self.blocks = nn.TransformerEncoder(layer, 2)
            self.head = nn.Linear(d, vocab)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
            h = self.blocks(self.emb(x) + self.pos, mask=mask, is_causal=True)
            return self.head(h)  # type: ignore[no-any-return]

    model = Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    steps = int(cfg.get("steps", 40))

    def batches() -> Iterator[np.ndarray]:
        buf: list[np.ndarray] = []
        have = 0
        for ids, payload, _ in system.iterate(cfg):
            arr = np.asarray(payload).reshape(len(ids), SEQ_LEN)[:, : seq + 1]
            buf.append(arr)
            have += len(arr)
            while have >= batch:
                cat = np.concatenate(buf)
                yield cat[:batch] % vocab
                buf, have = [cat[batch:]], have - batch

    it = batches()
    wait = compute = 0.0
    done = 0
    t0 = time.perf_counter()
    next(it)  # the first batch is time to first batch, measured elsewhere
    t_first = time.perf_counter() - t0
    while done < steps:
        a = time.perf_counter()
        try:
            x = next(it)
        except StopIteration:
            it = batches()
            continue
        b = time.perf_counter()
        xt = torch.from_numpy(np.ascontiguousarray(x)).long()
        logits = model(xt[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), xt[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        c = time.perf_counter()
        wait += b - a
        compute += c - b
        done += 1
    return {
        "steps": done,
        "wait_s": wait,
        "compute_s": compute,
        "stall_fraction": wait / (wait + compute),
        "first_batch_s": t_first,
        "step_s": (wait + compute) / done,
    }


SYSTEMS = {
    "hf": "bench.peers.sys_hf",
    "wds": "bench.peers.sys_wds",
    "mds": "bench.peers.sys_mds",
    "lit": "bench.peers.sys_lit",
    "ostraca": "bench.peers.sys_ostraca",
    "limit": "bench.peers.sys_limit",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", required=True)
    a = ap.parse_args()
    cfg = json.loads(a.config)
    result: dict[str, Any] = {"ok": False}
    try:
        import importlib

        module = importlib.import_module(SYSTEMS[cfg["system"]])
        cfg["_rss_open"] = rss_now()  # after every import: the baseline
        cfg["_cpu_open"] = cpu_now()
        cfg["_t_open"] = time.perf_counter()  # time to first batch counts from construction
        system = module.System(cfg)
        fn = {"epoch": scenario_epoch, "ranks": scenario_ranks, "train": scenario_train}
        metrics = fn[cfg["scenario"]](system, cfg)
        metrics.update(getattr(system, "notes", {}))
        result = {"ok": True, "metrics": metrics}
    except BaseException as e:  # the parent records what happened, whatever it was
        tb = traceback.format_exc()
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"[:600], "traceback": tb[-4000:]}
        print(tb, flush=True)
    Path(a.out).write_text(json.dumps(result))
    os._exit(0)  # skip interpreter teardown (peer thread pools); the result is written


if __name__ == "__main__":
    main()
