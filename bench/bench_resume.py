"""Resume at 50% of an epoch through the PyTorch adapter, before and after (not a test).

One command, <= 3 minutes: ``.venv/bin/python -m bench.bench_resume`` (table on stdout, JSON in
``bench/results/resume.json``, the table in ``bench/results/resume.md``).

Publishes ``--size`` (default 1 GiB) of token rows (``sample_id`` int64 + 2,049 int32 tokens,
64 MiB shards, 2 MiB chunks, uncompressed; ``--encrypt`` seals them) to a local registry (its own
process, on loopback) and grants a researcher. Then, each in a fresh process, with
``ShardDataset(shuffle=False, batch_rows=1024)`` as the peers' benchmark runs it (default
``block_rows``), every consumer summing every token:

- ``full``: one uninterrupted epoch (the reference order);
- ``half``: the first 50% of the rows, then ``state_dict()`` (saved for the resumes);
- ``resume``: ``load_state_dict`` and the rest of the epoch, with the current adapter (``after``)
  and with the adapter of commit ``--before`` (``before``, the same state), each from an empty
  cache (``cold``: resumed on a fresh node) and from a cache holding every shard (``warm``).

For each resume: time to the first batch (from the ``open_dataset`` call; imports excluded), the
whole rest, peak RSS (``VmHWM``), the RSS once torch, pyarrow and the client are imported (the
floor every row pays), the peak anonymous memory (heap and buffers, sampled every 5 ms), and
whether the ``sample_id`` order of ``half`` + ``resume`` equals ``full``'s exactly.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from ostraca.client.config import load_config
from ostraca.client.stream import open_dataset

# The measured process imports only the client (and torch); the orchestrator's imports (the
# registry, the corpus generator) are inside its functions, so they do not inflate the RSS.
# ruff: noqa: PLC0415

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATASET = "bench/resume-tokens"
BEFORE = "55c6f3c"
"""The last commit with the adapter that rebuilt the current block on resume."""


# ── the measured process ──────────────────────────────────────────────────────────────────────


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class _AnonPeak(threading.Thread):
    """Samples ``RssAnon`` every 5 ms; ``peak`` is the highest seen (MiB)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, _status_kib("RssAnon") / 1024)


def _adapter(code: str, work: Path) -> Any:
    """The ``ShardDataset`` class of ``code`` (``after``: this tree; else a git commit)."""
    if code == "after":
        from ostraca.client.torch import ShardDataset

        return ShardDataset
    text = subprocess.check_output(["git", "show", f"{code}:client/torch.py"], cwd=ROOT, text=True)
    path = work / f"adapter_{code}.py"
    path.write_text(text.replace("from .source import", "from ostraca.client.source import"))
    spec = importlib.util.spec_from_file_location(f"adapter_{code}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ShardDataset


def _child(cfg: dict[str, Any]) -> dict[str, Any]:
    work = Path(cfg["work"])
    dataset_cls = _adapter(cfg["code"], work)
    config = load_config(
        home=Path(cfg["home"]), registry=cfg["registry"], cache_dir=Path(cfg["cache"])
    )
    base_rss = _status_kib("VmRSS") / 1024
    base_anon = _status_kib("RssAnon") / 1024
    sampler = _AnonPeak()
    sampler.start()
    t0 = time.perf_counter()
    vd = open_dataset(DATASET, config=config, prefetch=cfg["prefetch"])
    opened = time.perf_counter() - t0
    ds = dataset_cls(vd, shuffle=False, batch_rows=1024, output="arrow", rank=0, world_size=1)
    if cfg.get("state_in"):
        ds.load_state_dict(json.loads(Path(cfg["state_in"]).read_text()))
    stop = cfg.get("stop_after")
    first = None
    rows = 0
    ids: list[Any] = []
    for batch in ds:
        if first is None:
            first = time.perf_counter() - t0
        int(batch.column(1).values.to_numpy().sum(dtype=np.int64))  # read every token
        ids.append(batch.column(0).to_numpy().copy())  # a view would keep the shard mapped
        rows += batch.num_rows
        if stop is not None and rows >= stop:
            break
    elapsed = time.perf_counter() - t0
    if cfg.get("state_out"):
        Path(cfg["state_out"]).write_text(json.dumps(ds.state_dict()))
    vd.close()
    sampler.stop.set()
    sampler.join()
    np.save(cfg["ids_out"], np.concatenate(ids))
    return {
        "open_s": opened,
        "first_batch_s": first,
        "elapsed_s": elapsed,
        "rows": rows,
        "peak_rss_mb": _status_kib("VmHWM") / 1024,
        "rss_after_imports_mb": base_rss,
        "peak_anon_mb": sampler.peak,
        "anon_after_imports_mb": base_anon,
    }


def _bench(name: str) -> Any:
    """Another benchmark module (by name, so that mypy, given each benchmark file, does not
    meet the same file as two modules)."""
    return importlib.import_module(f"bench.{name}")


# ── the orchestrator ──────────────────────────────────────────────────────────────────────────


def _run(cfg: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = _bench("bench_publish").json_child("bench.bench_resume", cfg)
    return result


def _publish(work: Path, registry: str, size: int, encrypt: bool) -> tuple[Path, float, int]:
    corpus = _bench("bench_client")
    from ostraca.cli.demo import make_actor
    from ostraca.client.publishing import publish
    from ostraca.protocol_spec import utc_now

    pub = make_actor(work / "pub", registry, "bench-pub", "institution", "bench")
    res = make_actor(work / "res", registry, "bench-res", "researcher", "bench")
    pub.client.create_namespace("bench")
    t = time.perf_counter()
    rows = size // corpus.ROW_BYTES
    publish(
        pub.client,
        corpus._token_batches(rows),
        dataset=DATASET,
        license="CC-BY-4.0",
        terms="bench only",
        progress=False,
        compression="none",
        encrypt=encrypt,
    )
    seconds = time.perf_counter() - t
    req = res.client.request_access(DATASET, purpose="benchmark")
    pub.client.approve(req.request_id, expires=utc_now() + timedelta(days=1))
    pub.client.close()
    res.client.close()
    return res.home, seconds, rows


def _measure(args: argparse.Namespace, work: Path, registry: str) -> dict[str, Any]:
    row_bytes: int = _bench("bench_client").ROW_BYTES
    home, publish_s, rows = _publish(work, registry, args.size, args.encrypt)
    base = {"work": str(work), "home": str(home), "registry": registry, "prefetch": args.prefetch}
    warm_cache = work / "cache-warm"

    def run(name: str, code: str, cache: Path, **kw: Any) -> dict[str, Any]:
        if cache != warm_cache:
            shutil.rmtree(cache, ignore_errors=True)
        ids_out = str(work / f"ids-{name}.npy")
        cfg = {**base, "name": name, "code": code, "cache": str(cache), "ids_out": ids_out, **kw}
        r = _run(cfg)
        r["ids_out"] = ids_out
        return r

    full = run("full", "after", warm_cache)  # fills the warm cache with every shard
    state = str(work / "state.json")
    half = run("half", "after", work / "cache-half", stop_after=rows // 2, state_out=state)
    reference = np.load(full["ids_out"])
    head = np.load(half["ids_out"])
    rows_out: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.repeat):
        for code in ("after", args.before):
            for cache in ("cold", "warm"):
                where = warm_cache if cache == "warm" else work / "cache-cold"
                r = run("resume", code, where, state_in=state)
                got = np.concatenate([head, np.load(r["ids_out"])])
                r["exact_order"] = bool(len(got) == len(reference) and (got == reference).all())
                label = f"{'after' if code == 'after' else 'before'}/{cache}"
                rows_out.setdefault(label, []).append(r)
    summary = {k: _median(v) for k, v in rows_out.items()}
    return {
        "rows": rows,
        "bytes": rows * row_bytes,
        "publish_s": publish_s,
        "full": full,
        "half": half,
        "resume": summary,
        "runs": rows_out,
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (
        "open_s",
        "first_batch_s",
        "elapsed_s",
        "peak_rss_mb",
        "rss_after_imports_mb",
        "peak_anon_mb",
        "anon_after_imports_mb",
    )
    out: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["exact_order"] = all(r["exact_order"] for r in runs)
    out["rows"] = runs[0]["rows"]
    return out


def _table(result: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "# Resume at 50% through the PyTorch adapter",
        "",
        f"{result['bytes'] / 2**30:.2f} GiB of token rows ({result['rows']:,} rows), 64 MiB "
        f"shards, {'encrypted' if args.encrypt else 'unencrypted'}, prefetch {args.prefetch}; "
        "`ShardDataset(shuffle=False, "
        f"batch_rows=1024)`, default block_rows; median of {args.repeat}, each a fresh process; "
        f"load average at the start {os.getloadavg()[0]:.2f}. `before` is commit {args.before}. "
        "Written by `bench/bench_resume.py`.",
        "",
        "| resume | first batch (of which open_dataset) | rest of the epoch | peak RSS "
        "(after imports) | peak anon (after imports) | exact order |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, r in result["resume"].items():
        lines.append(
            f"| {label} | {r['first_batch_s'] * 1000:.0f} ms ({r['open_s'] * 1000:.0f} ms) | "
            f"{r['elapsed_s']:.2f} s | {r['peak_rss_mb']:.0f} MB ({r['rss_after_imports_mb']:.0f}) "
            f"| {r['peak_anon_mb']:.0f} MB ({r['anon_after_imports_mb']:.0f}) | "
            f"{'exact' if r['exact_order'] else 'DIFFERENT'} |"
        )
    half, full = result["half"], result["full"]
    lines += [
        "",
        f"Uninterrupted epoch: {full['elapsed_s']:.2f} s, peak RSS {full['peak_rss_mb']:.0f} MB; "
        f"first half: {half['elapsed_s']:.2f} s, peak RSS {half['peak_rss_mb']:.0f} MB "
        f"(peak anon {half['peak_anon_mb']:.0f} MB). Targets: first batch <= 0.2 s, peak RSS "
        "<= 300 MB, exact order.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=1 << 30, help="bytes of rows (default 1 GiB)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", default=BEFORE, help="commit of the 'before' adapter")
    parser.add_argument("--encrypt", action="store_true", help="seal the shards (AES-256-GCM)")
    parser.add_argument("--prefetch", type=int, default=2, help="open_dataset's shards ahead")
    parser.add_argument("--out", default="resume", help="results/<out>.json and .md")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    from ostraca.server.process import registry_process

    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        work = Path(tmp)
        with registry_process(work / "registry") as registry:
            result = _measure(args, work, registry)
    table = _table(result, args)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{args.out}.md").write_text(table)


if __name__ == "__main__":
    main()
