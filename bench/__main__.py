"""``python -m bench [--quick]``: Ostraca against its peers and the physical limits, one command.

Runs inside the benchmark's own virtual environment (``bench/.venv``, made by ``bench/setup.sh``;
this module re-executes itself there). Every measurement is a fresh subprocess
(``bench.peers.run``) whose process tree is sampled for RSS/PSS; repeated measurements are
interleaved across systems (rep 1 of every system, then rep 2, …) so that ratios are taken pair
by pair within a repetition. Writes ``bench/results/<date>.json``, PNG plots beside it and
``bench/RESULTS.md``.
"""

# Imports inside functions are deliberate: each measurement process loads only the system it
# measures (peer libraries, torch, Ostraca), and the orchestrator runs without them.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.peers.common import (
    BENCH_DIR,
    DATA_DIR,
    RESULTS_DIR,
    TOKEN,
    VENV_PY,
    Corpus,
    MiB,
    RunResult,
    drop_page_cache,
    free_port,
    median_spread,
    run_child,
)


def _in_bench_venv() -> bool:
    return Path(sys.prefix).resolve() == (BENCH_DIR / ".venv").resolve()


def _reexec_in_venv(argv: list[str]) -> None:
    if _in_bench_venv() or os.environ.get("BENCH_NO_VENV"):
        return
    subprocess.run(["bash", str(BENCH_DIR / "setup.sh")], check=True)
    env = dict(os.environ, PYTHONPATH=str(BENCH_DIR.parent))
    os.execve(str(VENV_PY), [str(VENV_PY), "-m", "bench", *argv], env)


@dataclass
class Plan:
    quick: bool
    reps: int
    d1: Corpus
    d2: Corpus
    train_steps: int
    load_seconds: float
    systems: list[str]
    timeout: float = 600.0


# (key, label, how the bytes travel, warm means)
SYSTEMS: dict[str, dict[str, str]] = {
    "ostraca": {
        "label": "Ostraca via its registry",
        "cold": "registry over loopback, empty client cache",
        "warm": "client cache full (memory-mapped, verified)",
    },
    "ostraca-nginx": {
        "label": "Ostraca, blobs via nginx",
        "cold": "metadata from the registry, shard bytes from nginx, empty cache",
        "warm": "client cache full (memory-mapped, verified)",
    },
    "hf": {
        "label": "HF datasets (Parquet)",
        "cold": "streaming=True over HTTP (fsspec), Arrow batches of 1,024",
        "warm": "local Parquet files (it keeps no cache in streaming mode)",
    },
    "wds": {
        "label": "WebDataset (tar)",
        "cold": "pipe:curl over HTTP, one sample at a time",
        "warm": "local tar files",
    },
    "mds": {
        "label": "MosaicML Streaming (MDS), with shim",
        "cold": "HTTP download shim into an empty local cache",
        "warm": "local cache full",
    },
    "lit": {
        "label": "LitData (chunks), with shim",
        "cold": "HTTP downloader shim into an empty cache",
        "warm": "cache full",
    },
}


class Bench:
    def __init__(self, plan: Plan, log: Callable[[str], None]) -> None:
        self.plan = plan
        self.log = log
        self.results: dict[str, Any] = {"runs": {}, "notes": {}}
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-run-"))
        self.nginx_base = ""
        self.ostraca: dict[str, dict[str, Any]] = {}
        self.registry_url = ""
        self.corpora: dict[str, dict[str, Any]] = {}

    # ── helpers ──────────────────────────────────────────────────────────────────────────────
    def cfg(self, system: str, corpus: Corpus, scenario: str, **extra: Any) -> dict[str, Any]:
        base = system.removesuffix("-nginx")
        cfg: dict[str, Any] = {
            "system": base,
            "scenario": scenario,
            "data_dir": str(corpus.root.resolve()),
            "kind": corpus.kind,
            "base_url": self.nginx_base,
            "cache_dir": str(self.tmp / f"cache-{system}-{corpus.name}"),
        }
        if base == "ostraca":
            info = self.ostraca[corpus.name]
            cfg.update(
                registry=self.registry_url,
                dataset=info["dataset"],
                home=info["home"],
                via="nginx" if system.endswith("-nginx") else "registry",
            )
        cfg.update(extra)
        return cfg

    def child(self, cfg: dict[str, Any], env: dict[str, str] | None = None) -> RunResult:
        return run_child(["--config", json.dumps(cfg)], timeout=self.plan.timeout, env=env)

    def record(self, key: str, res: RunResult) -> None:
        self.results["runs"].setdefault(key, []).append(res.to_json())
        state = "ok" if res.ok else f"FAILED: {res.error}"
        m = res.metrics
        rate = ""
        if res.ok and m.get("elapsed_s") and m.get("bytes"):
            rate = f" {m['bytes'] / m['elapsed_s'] / 1e6:.0f} MB/s ttfb {m.get('ttfb_s', 0):.3f}s"
        self.log(f"  {key}: {state}{rate} (wall {res.wall_s:.1f}s)")

    def clear_cache(self, system: str, corpus: Corpus) -> None:
        shutil.rmtree(self.tmp / f"cache-{system}-{corpus.name}", ignore_errors=True)

    # ── limits ───────────────────────────────────────────────────────────────────────────────
    def curl(self, urls: list[str], parallel: int) -> dict[str, Any]:
        cmd = ["curl", "-s", "-f", "-H", f"Authorization: Bearer {TOKEN}"]
        if parallel > 1:
            cmd += ["-Z", "--parallel-max", str(parallel)]
        for u in urls:
            cmd += ["-o", "/dev/null", u]
        t0 = time.perf_counter()
        usage0 = os.times()
        proc = subprocess.run(cmd, capture_output=True, check=False)
        usage1 = os.times()
        wall = time.perf_counter() - t0
        return {
            "ok": proc.returncode == 0,
            "error": proc.stderr.decode()[-300:] if proc.returncode else None,
            "elapsed_s": wall,
            "cpu_s": (usage1.children_user - usage0.children_user)
            + (usage1.children_system - usage0.children_system),
        }

    def limit_files(self, corpus: Corpus) -> tuple[list[str], int]:
        """The files the network limit fetches: Ostraca's shard blobs (the same bytes its
        client fetches) when published, else the Arrow IPC files."""
        info = self.ostraca.get(corpus.name)
        if info:
            base = f"{self.nginx_base}/v1/datasets/{info['dataset']}"
            urls = [f"{base}/blobs/sha256:{h}" for h in info["shards"]]
            return urls, int(sum(info["shard_bytes"]))
        files = sorted((corpus.root / "arrow").glob("*.arrow"))
        rel = corpus.root.name
        return [f"{self.nginx_base}/{rel}/arrow/{p.name}" for p in files], sum(
            p.stat().st_size for p in files
        )

    # ── the run ──────────────────────────────────────────────────────────────────────────────
    def throughput(self, corpus: Corpus, reps: int, tag: str, warm: bool = True) -> None:
        p = self.plan
        urls, nbytes = self.limit_files(corpus)
        for rep in range(reps):
            self.log(f"[{tag}] repetition {rep + 1}/{reps}")
            for variant in ("plain", "sha256"):
                for temp in ("cold", "warm"):
                    r = self.child(
                        self.cfg("limit", corpus, "epoch", variant=variant, cold=temp == "cold")
                    )
                    self.record(f"{tag}/limit-local-{variant}/{temp}", r)
            for par in (1, 4):
                c = self.curl(urls, par)
                c["bytes"] = nbytes
                self.results["runs"].setdefault(f"{tag}/limit-curl-{par}", []).append(c)
                self.log(f"  {tag}/limit-curl-{par}: {nbytes / c['elapsed_s'] / 1e6:.0f} MB/s")
            for system in p.systems:
                if rep == 0 and tag == "d1" and system.startswith("ostraca"):
                    # Memory flat in dataset size: the same cold read stopped at 50%.
                    self.clear_cache(system, corpus)
                    half = self.cfg(system, corpus, "epoch", stop_after=corpus.num_rows // 2)
                    self.record(f"half/{system}/cold", self.child(half))
                self.clear_cache(system, corpus)
                extra: dict[str, Any] = {}
                if rep == 0 and tag == "d1":
                    extra["ids_out"] = str(self.tmp / f"ids-ref-{system}.npy")
                if system in ("hf", "wds"):
                    extra["mode"] = "http"
                r = self.child(self.cfg(system, corpus, "epoch", **extra))
                self.record(f"{tag}/{system}/cold", r)
                if not warm:
                    continue
                if system in ("hf", "wds"):
                    warm_cfg = self.cfg(system, corpus, "epoch", mode="local")
                else:
                    if not r.ok:  # warm needs the cache the cold run fills
                        self.child(self.cfg(system, corpus, "epoch"))
                    warm_cfg = self.cfg(system, corpus, "epoch")
                self.record(f"{tag}/{system}/warm", self.child(warm_cfg))

    def resume(self, corpus: Corpus) -> None:
        half = corpus.num_rows // 2
        for system in self.plan.systems:
            self.log(f"[resume] {system}")
            for _rep in range(max(1, self.plan.reps // 2)):
                st = self.tmp / f"state-{system}.json"
                a, b = self.tmp / f"ids-a-{system}.npy", self.tmp / f"ids-b-{system}.npy"
                r1 = self.child(
                    self.cfg(
                        system, corpus, "epoch", stop_after=half, state_out=str(st), ids_out=str(a)
                    )
                )
                self.record(f"resume/{system}/first-half", r1)
                if not r1.ok:
                    break
                r2 = self.child(self.cfg(system, corpus, "epoch", state_in=str(st), ids_out=str(b)))
                if r2.ok:
                    r2.metrics["order_check"] = self._order_check(system, a, b)
                self.record(f"resume/{system}/resumed", r2)

    def _order_check(self, system: str, a: Path, b: Path) -> dict[str, Any]:
        import numpy as np

        ref_path = self.tmp / f"ids-ref-{system}.npy"
        if not ref_path.exists():
            return {"exact": None, "why": "no reference order (the cold run failed)"}
        ref = np.load(ref_path)
        got = np.concatenate([np.load(a), np.load(b)])
        first_diff = None
        n = min(len(ref), len(got))
        neq = np.nonzero(ref[:n] != got[:n])[0]
        if len(neq):
            first_diff = int(neq[0])
        return {
            "exact": bool(len(ref) == len(got) and first_diff is None),
            "reference_rows": len(ref),
            "delivered_rows": len(got),
            "first_half_rows": len(np.load(a)),
            "first_difference_at": first_diff,
            "duplicates": int(len(got) - len(np.unique(got))),
        }

    def coverage(self, corpus: Corpus) -> None:
        import numpy as np

        for system in self.plan.systems:
            self.log(f"[coverage] {system}: 2 ranks x 2 workers")
            port = free_port()
            out: dict[int, RunResult] = {}

            def go(
                rank: int, system: str = system, port: int = port, out: dict[int, RunResult] = out
            ) -> None:
                env = {
                    "RANK": str(rank),
                    "WORLD_SIZE": "2",
                    "LOCAL_RANK": str(rank),
                    "LOCAL_WORLD_SIZE": "2",
                    "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": str(port),
                }
                cfg = self.cfg(
                    system,
                    corpus,
                    "ranks",
                    workers=2,
                    ids_out=str(self.tmp / f"rank{rank}-{system}.npy"),
                    cache_dir=str(self.tmp / f"cache-ranks-{system}"),
                )
                out[rank] = self.child(cfg, env=env)

            threads = [threading.Thread(target=go, args=(r,)) for r in (0, 1)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            summary: dict[str, Any] = {"ranks": {r: v.to_json() for r, v in out.items()}}
            if all(v.ok for v in out.values()):
                ids = np.concatenate([np.load(self.tmp / f"rank{r}-{system}.npy") for r in (0, 1)])
                uniq = np.unique(ids)
                expected = corpus.num_rows
                summary.update(
                    ok=True,
                    delivered=len(ids),
                    unique=len(uniq),
                    duplicates=int(len(ids) - len(uniq)),
                    misses=int(expected - np.isin(np.arange(expected), uniq).sum()),
                    expected=expected,
                )
            else:
                summary.update(
                    ok=False,
                    error="; ".join(f"rank {r}: {v.error}" for r, v in out.items() if not v.ok),
                )
            self.results["runs"].setdefault(f"coverage/{system}", []).append(summary)
            self.log(
                f"  {system}: "
                + (
                    f"dup {summary.get('duplicates')} miss {summary.get('misses')}"
                    if summary["ok"]
                    else summary["error"]
                )
            )

    def corruption(self, corpus: Corpus) -> None:
        info = self.corpora[corpus.name]
        for system in self.plan.systems:
            self.log(f"[corrupt] {system}")
            extra: dict[str, Any] = {
                "verify": True,
                "cache_dir": str(self.tmp / f"cache-corrupt-{system}"),
            }
            flipped: Path | None = None
            offset = 0
            if system.startswith("ostraca"):
                blob = self.ostraca[corpus.name]["shards"][1]
                flipped = self.ostraca_blob_dir / blob
                offset = flipped.stat().st_size // 2
                _flip(flipped, offset)
                where = {"file": f"shard 1 blob {blob[:12]}…", "offset": offset}
            else:
                fmt = {"hf": "parquet"}.get(system, system)
                extra["subdir"] = f"corrupt/{fmt}"
                if system in ("hf", "wds"):
                    extra["mode"] = "http"
                where = info["corrupt"][fmt]
            try:
                r = self.child(self.cfg(system, corpus, "epoch", **extra))
            finally:
                if flipped is not None:
                    _flip(flipped, offset)
            shutil.rmtree(self.tmp / f"cache-corrupt-{system}", ignore_errors=True)
            r.metrics["where"] = where
            self.record(f"corrupt/{system}", r)

    def train(self, corpus: Corpus) -> None:
        for system in self.plan.systems:
            self.log(f"[stall] {system}")
            for _ in range(max(1, self.plan.reps // 2)):
                self.clear_cache(system, corpus)
                extra: dict[str, Any] = {"steps": self.plan.train_steps}
                if system in ("hf", "wds"):
                    extra["mode"] = "http"
                self.record(
                    f"train/{system}", self.child(self.cfg(system, corpus, "train", **extra))
                )

    def profile(self, corpus: Corpus) -> None:
        """Where Ostraca's CPU goes when it misses a target: py-spy (all threads, 250 Hz) over
        one cold and one warm read, summarised by self and inclusive samples."""
        spy = shutil.which("py-spy") or str(VENV_PY.parent / "py-spy")
        if not Path(spy).exists():
            self.results["profile"] = "py-spy is not installed in bench/.venv: no profile."
            return
        parts: list[str] = []
        for system in ("ostraca", "ostraca-nginx"):
            if system not in self.plan.systems:
                continue
            self.clear_cache(system, corpus)
            for temp in ("cold",) if self.plan.quick else ("cold", "warm"):
                raw = self.tmp / f"profile-{system}-{temp}.txt"
                cmd = [spy, "record", "-r", "250", "-f", "raw", "--threads", "-o", str(raw), "--"]
                r = run_child(
                    ["--config", json.dumps(self.cfg(system, corpus, "epoch"))],
                    timeout=self.plan.timeout,
                    prefix=cmd,
                )
                if not raw.exists():
                    parts.append(f"- {system} {temp}: no profile ({r.error or 'py-spy failed'})")
                    continue
                parts.append(
                    f"**{SYSTEMS[system]['label']}, {temp}** "
                    f"({_rate_txt(r)}; py-spy, all threads, CPU samples only):\n"
                )
                parts.append(_profile_summary(raw.read_text()))
        self.results["profile"] = "\n".join(parts)

    @property
    def ostraca_blob_dir(self) -> Path:
        from bench.peers.ostraca_setup import Registry

        return Registry().blob_dir


def _rate_txt(r: RunResult) -> str:
    m = r.metrics
    if not r.ok or not m.get("elapsed_s"):
        return f"failed: {r.error}"
    return f"{m['bytes'] / m['elapsed_s'] / 1e6:.0f} MB/s under the profiler"


def _profile_summary(raw: str, top: int = 12) -> str:
    """Top functions by self samples (leaf frame) with their inclusive share, from py-spy's raw
    (collapsed-stack) output, import stacks left out; thread roots are listed with their shares.
    py-spy's idle detection is heuristic: some waits (``Condition.wait``) still show up."""
    self_c: dict[str, int] = {}
    incl: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        if any("importlib" in f for f in frames):
            continue  # module imports (before the dataset is opened) are not the read path
        total += count
        threads[frames[0]] = threads.get(frames[0], 0) + count
        leaf = frames[-1]
        self_c[leaf] = self_c.get(leaf, 0) + count
        for f in set(frames[1:]):
            incl[f] = incl.get(f, 0) + count
    if not total:
        return "(no samples)\n"
    rows = ["| function (file:line) | self | inclusive |", "|---|---|---|"]
    for f, c in sorted(self_c.items(), key=lambda kv: -kv[1])[:top]:
        rows.append(
            f"| `{f[:110]}` | {100 * c / total:.1f}% | {100 * incl.get(f, c) / total:.1f}% |"
        )
    th = ", ".join(
        f"{k[:40]} {100 * v / total:.0f}%"
        for k, v in sorted(threads.items(), key=lambda kv: -kv[1])[:6]
    )
    return "\n".join(rows) + f"\n\n{total} samples; by thread: {th}.\n"


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
    drop_page_cache([path])


def machine_info() -> dict[str, Any]:
    import platform

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    with contextlib.suppress(OSError, ValueError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    versions: dict[str, str] = {"python": platform.python_version()}
    from importlib.metadata import PackageNotFoundError, version

    for pkg in (
        "ostraca",
        "pyarrow",
        "numpy",
        "torch",
        "datasets",
        "webdataset",
        "mosaicml-streaming",
        "litdata",
        "fsspec",
        "uvicorn",
        "fastapi",
    ):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    for tool, args in (("nginx", ["-v"]), ("curl", ["--version"]), ("wrk", ["-v"])):
        try:
            out = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
            versions[tool] = (out.stderr or out.stdout).strip().splitlines()[0][:80]
        except (OSError, IndexError):
            versions[tool] = "missing"
    try:
        commit = subprocess.run(
            ["git", "-C", str(BENCH_DIR.parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except OSError:
        commit = "?"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": mem,
        "kernel": platform.release(),
        "versions": versions,
        "commit": commit.strip(),
        "loadavg_start": os.getloadavg(),
    }


def plan_for(args: argparse.Namespace) -> Plan:
    if args.quick:
        plan = Plan(
            quick=True,
            reps=args.reps or 2,
            d1=Corpus("tokens", "tokens", 64 * MiB, 8 * MiB),
            d2=Corpus("text", "text", 32 * MiB, 8 * MiB),
            train_steps=20,
            load_seconds=1.0,
            systems=list(SYSTEMS),
            timeout=180,
        )
    else:
        plan = Plan(
            quick=False,
            reps=args.reps or 5,
            d1=Corpus("tokens", "tokens", 2048 * MiB, 64 * MiB),
            d2=Corpus("text", "text", 1024 * MiB, 64 * MiB),
            train_steps=60,
            load_seconds=5.0,
            systems=list(SYSTEMS),
        )
    if args.d1_mib:
        plan.d1 = Corpus("tokens", "tokens", args.d1_mib * MiB, plan.d1.shard_bytes)
    if args.d2_mib:
        plan.d2 = Corpus("text", "text", args.d2_mib * MiB, plan.d2.shard_bytes)
    if args.systems:
        plan.systems = [s for s in args.systems.split(",") if s in SYSTEMS]
    return plan


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small data, fewer repetitions (<3 min)")
    ap.add_argument("--reps", type=int, default=0, help="repetitions (default 5; quick 2)")
    ap.add_argument("--systems", default="", help="comma-separated subset of " + ",".join(SYSTEMS))
    ap.add_argument("--d1-mib", type=int, default=0, help="D1 size in MiB (default 2048; quick 64)")
    ap.add_argument("--d2-mib", type=int, default=0, help="D2 size in MiB (default 1024; quick 32)")
    ap.add_argument(
        "--skip",
        default="",
        help="comma-separated phases to skip: d2,resume,coverage,corrupt,train,profile,load",
    )
    ap.add_argument(
        "--render",
        default="",
        help="only rewrite the markdown and plots of a "
        "results JSON (e.g. bench/results/2026-11-26-quick.json)",
    )
    args = ap.parse_args(argv)
    if args.render:
        return _render(Path(args.render))
    _reexec_in_venv(argv)

    from bench.peers import ostraca_setup, report
    from bench.peers.datagen import generate
    from bench.peers.serve import Nginx

    plan = plan_for(args)
    skip = set(filter(None, args.skip.split(",")))
    t_start = time.perf_counter()
    started = datetime.now(UTC)

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)

    bench = Bench(plan, log)
    bench.results["machine"] = machine_info()
    bench.results["plan"] = {
        "quick": plan.quick,
        "reps": plan.reps,
        "systems": plan.systems,
        "d1": vars(plan.d1),
        "d2": vars(plan.d2),
        "train_steps": plan.train_steps,
    }
    bench.results["started"] = started.isoformat(timespec="seconds")
    bench.results["argv"] = argv
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    corpora = [plan.d1] if "d2" in skip else [plan.d1, plan.d2]
    for c in corpora:
        bench.corpora[c.name] = generate(c, log=log)
    bench.results["corpora"] = bench.corpora

    why_not = ostraca_setup.available()
    if why_not is not None:
        bench.results["notes"]["ostraca"] = f"not yet available: {why_not}"
        plan.systems = [s for s in plan.systems if not s.startswith("ostraca")]
    ostraca_setup.reset()  # publish with the code as it is now, every run
    with ostraca_setup.Registry() as reg:
        bench.registry_url = reg.url
        if why_not is None:
            for c in corpora:
                try:
                    bench.ostraca[c.name] = ostraca_setup.publish_corpus(
                        reg, c.root, c.root.name, c.shard_bytes
                    )
                except Exception as e:
                    bench.results["notes"]["ostraca"] = f"publish failed: {type(e).__name__}: {e}"
                    plan.systems = [s for s in plan.systems if not s.startswith("ostraca")]
                    break
        bench.results["ostraca"] = bench.ostraca
        with Nginx(DATA_DIR.resolve(), blob_dir=reg.blob_dir) as ng:
            bench.nginx_base = ng.base
            log(f"nginx {ng.base}, registry {reg.url}; systems: {', '.join(plan.systems)}")
            bench.throughput(plan.d1, plan.reps, "d1")
            if "d2" not in skip:
                bench.throughput(plan.d2, max(1, plan.reps // 2), "d2", warm=not plan.quick)
            if "resume" not in skip:
                bench.resume(plan.d1)
            if "coverage" not in skip:
                bench.coverage(plan.d1)
            if "corrupt" not in skip:
                bench.corruption(plan.d1)
            if "train" not in skip:
                bench.train(plan.d1)
            if "profile" not in skip and any(s.startswith("ostraca") for s in plan.systems):
                bench.profile(plan.d1)
        if "load" not in skip:
            from bench.peers import load

            bench.results["load"] = load.run_all(
                registry=reg,
                ostraca=bench.ostraca.get(plan.d1.name),
                seconds=plan.load_seconds,
                log=log,
            )
    bench.results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    bench.results["duration_s"] = time.perf_counter() - t_start
    shutil.rmtree(bench.tmp, ignore_errors=True)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    partial = bool(args.systems or skip or args.d1_mib or args.d2_mib or args.reps)
    stamp = started.strftime("%Y-%m-%d") + ("-quick" if plan.quick else "")
    stamp += "-partial" if partial else ""
    out_json = RESULTS_DIR / f"{stamp}.json"
    summary = report.summarize(bench.results, SYSTEMS)
    bench.results["summary"] = summary
    out_json.write_text(json.dumps(bench.results, indent=1, default=str))
    plots = report.plots(summary, RESULTS_DIR, stamp)
    md = report.markdown(bench.results, summary, SYSTEMS, plots, out_json.name)
    # A partial run (subset, skipped phases, other sizes) never replaces RESULTS.md.
    md_path = RESULTS_DIR / f"{stamp}.md" if partial else BENCH_DIR / "RESULTS.md"
    md_path.write_text(md.replace("](results/", "](" if partial else "](results/"))
    log(f"wrote {out_json.relative_to(BENCH_DIR.parent)}, {md_path} and {len(plots)} plots")
    _ = median_spread
    return 0


def _render(path: Path) -> int:
    from bench.peers import report

    results = json.loads(path.read_text())
    stamp = path.stem
    summary = report.summarize(results, SYSTEMS)
    plots = report.plots(summary, path.parent, stamp)
    md = report.markdown(results, summary, SYSTEMS, plots, path.name)
    partial = stamp.endswith("-partial")
    md_path = path.with_suffix(".md") if partial else BENCH_DIR / "RESULTS.md"
    md_path.write_text(md.replace("](results/", "](") if partial else md)
    print(f"wrote {md_path} and {len(plots)} plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
