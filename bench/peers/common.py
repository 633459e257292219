"""Shared pieces of the harness: data layout, deterministic tokens, process-tree sampling.

Everything here imports only the standard library and numpy, so ``mypy --strict`` covers it.
"""

# Imports inside functions are deliberate: each measurement process loads only the system it
# measures (peer libraries, torch, Ostraca), and the orchestrator runs without them.
# ruff: noqa: PLC0415

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "data"
RESULTS_DIR = BENCH_DIR / "results"
VENV_PY = BENCH_DIR / ".venv" / "bin" / "python"

SEQ_LEN = 2049
VOCAB = 50257
SAMPLE_BYTES = 8 + 4 * SEQ_LEN  # sample_id int64 + 2,049 int32 tokens
TOKEN = "bench-token-7f3a9c"  # the bearer token nginx demands (loopback only)
MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Corpus:
    """One synthetic corpus: ``kind`` is ``tokens`` (D1) or ``text`` (D2)."""

    name: str
    kind: str
    total_bytes: int
    shard_bytes: int

    @property
    def root(self) -> Path:
        return DATA_DIR / f"{self.name}-{self.total_bytes // MiB}m-{self.shard_bytes // MiB}m"

    @property
    def rows_per_shard(self) -> int:
        if self.kind == "tokens":
            return max(1, self.shard_bytes // SAMPLE_BYTES)
        return max(1, self.shard_bytes // TEXT_MEAN_BYTES)

    @property
    def num_rows(self) -> int:
        per = self.rows_per_shard
        rows = self.total_bytes // (SAMPLE_BYTES if self.kind == "tokens" else TEXT_MEAN_BYTES)
        return max(per, (rows // per) * per)

    @property
    def num_shards(self) -> int:
        return self.num_rows // self.rows_per_shard

    def shard_range(self, shard: int) -> tuple[int, int]:
        per = self.rows_per_shard
        return shard * per, (shard + 1) * per


TEXT_MEAN_BYTES = 4096


def tokens_for(ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int32]:
    """Deterministic pseudo-random tokens for each ``sample_id`` (a 32-bit integer hash).

    Any delivered row can be checked against this, vectorised, without the original files.
    """
    j = np.arange(SEQ_LEN, dtype=np.uint64)
    x = (ids.astype(np.uint64)[:, None] * np.uint64(SEQ_LEN) + j[None, :]) & np.uint64(0xFFFFFFFF)
    x = (x * np.uint64(0x9E3779B1)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x85EBCA77)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(13)
    return (x % np.uint64(VOCAB)).astype(np.int32)


_WORDS = np.array(
    [
        "the",
        "of",
        "and",
        "to",
        "in",
        "a",
        "is",
        "that",
        "for",
        "it",
        "as",
        "was",
        "with",
        "be",
        "by",
        "on",
        "not",
        "he",
        "i",
        "this",
        "are",
        "or",
        "his",
        "from",
        "at",
        "which",
        "but",
        "have",
        "an",
        "they",
        "you",
        "were",
        "her",
        "she",
        "there",
        "one",
        "all",
        "we",
        "their",
        "can",
        "has",
        "been",
        "if",
        "more",
        "when",
        "will",
        "would",
        "who",
        "so",
        "no",
        "data",
        "licence",
        "shard",
        "manifest",
        "grant",
        "signed",
        "verified",
        "arrow",
        "token",
        "stream",
    ]
)


def text_for(sample_id: int) -> str:
    """A deterministic document of ~``TEXT_MEAN_BYTES`` bytes (words drawn by a seeded RNG)."""
    rng = np.random.default_rng(sample_id)
    n = int(rng.integers(TEXT_MEAN_BYTES // 8, TEXT_MEAN_BYTES // 3))
    return " ".join(_WORDS[rng.integers(0, len(_WORDS), n)].tolist())


# ---------------------------------------------------------------------------------------------
# Process-tree sampling: RSS and PSS from /proc/<pid>/smaps_rollup of the child and descendants.


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces: ppid is the 2nd field after the last ')'.
        rest = stat[stat.rfind(b")") + 2 :].split()
        kids.setdefault(int(rest[1]), []).append(int(entry.name))
    return kids


def process_tree(root: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def tree_memory(root: int) -> tuple[int, int, int]:
    """(RSS, PSS, anonymous) in bytes summed over the process tree rooted at ``root``.

    RSS and PSS include file-backed pages (memory-mapped shards, the page cache's share);
    ``Anonymous`` is the heap and buffers alone: what grows if a reader holds data itself."""
    rss = pss = anon = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
                    elif line.startswith("Anonymous:"):
                        anon += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, pss, anon


class MemorySampler:
    """Samples a process tree's RSS/PSS every ``interval`` seconds on a thread; keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_anon = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss, anon = tree_memory(self.pid)
            self.peak_anon = max(self.peak_anon, anon)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class RunResult:
    """What one fresh measurement subprocess reports, plus what its parent saw of it."""

    ok: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss: int = 0
    peak_pss: int = 0
    peak_anon: int = 0
    log_tail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_child(
    args: Sequence[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    python: Path | str | None = None,
    prefix: Sequence[str] = (),
) -> RunResult:
    """Run ``python -m bench.peers.run ARGS`` fresh; sample its tree's memory; read its JSON line.

    CPU time comes from ``wait4``'s rusage: user+system of the child and every descendant it
    reaped (DataLoader workers, curl pipes). The server side (nginx, registry) is not included.
    """
    out_path = (
        Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-child-{os.getpid()}-{time.time_ns()}"
    )
    cmd = [*prefix, str(python or sys.executable), "-m", "bench.peers.run", "--out", str(out_path)]
    cmd += args
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(REPO_DIR)
    log_path = out_path.with_suffix(".log")
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(REPO_DIR),
            start_new_session=True,
        )
        timer = threading.Timer(timeout, _kill_group, args=(proc.pid,))
        timer.start()
        with MemorySampler(proc.pid) as mem:
            _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    tail = log_path.read_text(errors="replace")[-3000:]
    log_path.unlink(missing_ok=True)
    res = RunResult(
        ok=False,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss=mem.peak_rss,
        peak_pss=mem.peak_pss,
        peak_anon=mem.peak_anon,
        log_tail=tail,
    )
    if out_path.exists():
        data = json.loads(out_path.read_text())
        out_path.unlink()
        res.ok = bool(data.get("ok"))
        res.metrics = data.get("metrics", {})
        res.error = data.get("error")
        if res.ok:
            res.log_tail = ""  # keep the JSON small: logs only for runs that failed
    else:
        res.error = f"child exited {proc.returncode} without a result" + (
            f" (killed after {timeout:.0f} s)" if wall >= timeout else ""
        )
    return res


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, 9)


def median_spread(values: Iterable[float]) -> dict[str, float] | None:
    """Median, min, max and relative spread ((max-min)/median) of the values; None if empty."""
    vs = sorted(v for v in values if v is not None)
    if not vs:
        return None
    n = len(vs)
    med = vs[n // 2] if n % 2 else (vs[n // 2 - 1] + vs[n // 2]) / 2
    return {
        "median": med,
        "min": vs[0],
        "max": vs[-1],
        "spread": (vs[-1] - vs[0]) / med if med else 0.0,
        "n": float(n),
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, headers: dict[str, str] | None = None) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers: that is all we wait for
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def drop_page_cache(paths: Iterable[Path]) -> None:
    """Evict the files' pages (posix_fadvise DONTNEED): a cold read without root's drop_caches."""
    for p in paths:
        if not p.is_file():
            continue
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def walk_files(root: Path) -> Iterator[Path]:
    for dirpath, _, files in os.walk(root):
        for name in files:
            yield Path(dirpath) / name
