"""Turn the raw runs into a summary (medians with spreads, ratios pair by pair), PNG plots and the
markdown of ``bench/RESULTS.md``."""

# Imports inside functions are deliberate: each measurement process loads only the system it
# measures (peer libraries, torch, Ostraca), and the orchestrator runs without them.
# ruff: noqa: PLC0415

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.peers.common import RESULTS_DIR, GiB, median_spread

Stat = dict[str, float] | None


def _rate(run: dict[str, Any], what: str) -> float | None:
    m = run.get("metrics", {})
    if not run.get("ok") or not m.get("elapsed_s"):
        return None
    el = float(m["elapsed_s"])
    if what == "samples_s":
        return float(m["samples"]) / el
    if what == "tokens_s":
        return float(m["tokens"]) / el
    if what == "mb_s":
        return float(m["bytes"]) / el / 1e6
    if what == "ttfb_s":
        return float(m["ttfb_s"]) if m.get("ttfb_s") is not None else None
    if what == "peak_rss_mb":
        return float(run["peak_rss"]) / 1e6
    if what == "peak_pss_mb":
        return float(run["peak_pss"]) / 1e6
    if what == "peak_anon_mb":
        return float(run.get("peak_anon", 0)) / 1e6 or None
    if what == "cpu_s_per_gib":  # the child's own CPU from construction to the end, no imports
        cpu = m.get("cpu_s", run["cpu_s"])
        return float(cpu) / (float(m["bytes"]) / GiB) if m.get("bytes") else None
    if what == "rss_at_open_mb":
        return float(m["rss_at_open"]) / 1e6 if m.get("rss_at_open") else None
    raise KeyError(what)


FIGURES = (
    "samples_s",
    "tokens_s",
    "mb_s",
    "ttfb_s",
    "peak_rss_mb",
    "peak_pss_mb",
    "cpu_s_per_gib",
    "rss_at_open_mb",
    "peak_anon_mb",
)


def _stats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        f: median_spread(v for r in runs if (v := _rate(r, f)) is not None) for f in FIGURES
    }
    out["ok"] = sum(1 for r in runs if r.get("ok"))
    out["n"] = len(runs)
    errs = [r.get("error") for r in runs if not r.get("ok")]
    out["error"] = errs[0] if errs else None
    return out


def _pairwise(a: list[float | None], b: list[float | None]) -> Stat:
    return median_spread(x / y for x, y in zip(a, b, strict=False) if x and y)


def summarize(results: dict[str, Any], systems: dict[str, dict[str, str]]) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = results["runs"]
    s: dict[str, Any] = {}
    for tag in ("d1", "d2"):
        t: dict[str, Any] = {}
        for key, rs in runs.items():
            if not key.startswith(tag + "/"):
                continue
            name = key.split("/", 1)[1]
            if "limit-curl" in name:
                mbs = [r["bytes"] / r["elapsed_s"] / 1e6 for r in rs if r.get("ok")]
                t[name] = {
                    "mb_s": median_spread(mbs),
                    "n": len(rs),
                    "cpu_s_per_gib": median_spread(
                        r["cpu_s"] / (r["bytes"] / GiB) for r in rs if r.get("ok")
                    ),
                }
            else:
                t[name] = _stats(rs)

        # Ratios pair by pair (repetition i of one against repetition i of the other).
        def series(name: str, fig: str = "mb_s", tag: str = tag) -> list[float | None]:
            key = f"{tag}/{name}"
            if "limit-curl" in name:
                return [
                    r["bytes"] / r["elapsed_s"] / 1e6 if r.get("ok") else None
                    for r in runs.get(key, [])
                ]
            return [_rate(r, fig) for r in runs.get(key, [])]

        ratios: dict[str, Any] = {}
        peers = [p for p in systems if not p.startswith("ostraca")]
        for o in (k for k in systems if k.startswith("ostraca")):
            if f"{tag}/{o}/cold" not in runs:
                continue
            cold, warm = series(f"{o}/cold"), series(f"{o}/warm")
            ratios[o] = {
                "cold_vs_curl1": _pairwise(cold, series("limit-curl-1")),
                "cold_vs_curl4": _pairwise(cold, series("limit-curl-4")),
                "warm_vs_local_sha256_warm": _pairwise(warm, series("limit-local-sha256/warm")),
                "warm_vs_local_plain_warm": _pairwise(warm, series("limit-local-plain/warm")),
            }
            best_cold = [
                max((v for p in peers if (v := _at(series(f"{p}/cold"), i))), default=None)
                for i in range(len(cold))
            ]
            best_warm = [
                max((v for p in peers if (v := _at(series(f"{p}/warm"), i))), default=None)
                for i in range(len(warm))
            ]
            ratios[o]["cold_vs_best_peer"] = _pairwise(cold, best_cold)
            ratios[o]["warm_vs_best_peer"] = _pairwise(warm, best_warm)
        t["ratios"] = ratios
        s[tag] = t
    # resume
    res: dict[str, Any] = {}
    for system in systems:
        r2 = runs.get(f"resume/{system}/resumed", [])
        r1 = runs.get(f"resume/{system}/first-half", [])
        if not r1:
            continue
        checks = [r["metrics"].get("order_check") for r in r2 if r.get("ok")]
        res[system] = {
            "latency_s": median_spread(
                float(r["metrics"]["ttfb_s"])
                for r in r2
                if r.get("ok") and r["metrics"].get("ttfb_s") is not None
            ),
            "exact": all(c and c.get("exact") for c in checks) if checks else None,
            "check": checks[0] if checks else None,
            "error": next((r.get("error") for r in r1 + r2 if not r.get("ok")), None),
            "half_peak_rss_mb": median_spread(r["peak_rss"] / 1e6 for r in r1 if r.get("ok")),
        }
    s["resume"] = res
    s["half"] = {k.split("/")[1]: _stats(v) for k, v in runs.items() if k.startswith("half/")}
    s["coverage"] = {
        k.split("/", 1)[1]: {kk: vv for kk, vv in v[0].items() if kk != "ranks"}
        for k, v in runs.items()
        if k.startswith("coverage/")
    }
    corrupt: dict[str, Any] = {}
    for k, runs_k in runs.items():
        if k.startswith("corrupt/"):
            run = runs_k[0]
            m = run.get("metrics", {})
            corrupt[k.split("/", 1)[1]] = {
                "refused": not run.get("ok"),
                "error": run.get("error"),
                "rows": m.get("samples"),
                "bad_rows": m.get("bad_rows"),
                "where": m.get("where"),
            }
    s["corrupt"] = corrupt
    s["train"] = {
        k.split("/", 1)[1]: {
            "stall": median_spread(r["metrics"]["stall_fraction"] for r in v if r.get("ok")),
            "step_s": median_spread(r["metrics"]["step_s"] for r in v if r.get("ok")),
            "error": next((r.get("error") for r in v if not r.get("ok")), None),
        }
        for k, v in runs.items()
        if k.startswith("train/")
    }
    s["load"] = results.get("load")
    return s


def _at(xs: list[float | None], i: int) -> float | None:
    return xs[i] if i < len(xs) else None


# ── markdown ───────────────────────────────────────────────────────────────────────────────────


def _f(st: Stat, fmt: str = "{:,.0f}", spread: bool = True) -> str:
    if not st:
        return "—"
    txt = fmt.format(st["median"])
    if spread and st.get("n", 1) > 1:
        txt += f" ±{st['spread'] * 50:.0f}%"
    return txt


def _ratio(st: Stat) -> str:
    if not st:
        return "—"
    return f"{st['median']:.2f}× ({st['min']:.2f}–{st['max']:.2f})"


def markdown(
    results: dict[str, Any],
    s: dict[str, Any],
    systems: dict[str, dict[str, str]],
    plots: list[str],
    json_name: str,
) -> str:
    mach = results["machine"]
    plan = results["plan"]
    v = mach["versions"]
    md: list[str] = []
    partial_flags = {"--systems", "--skip", "--d1-mib", "--d2-mib", "--reps"}
    partial = any(a.split("=")[0] in partial_flags for a in results.get("argv", []))
    md.append(
        "# Benchmark results"
        + (" — QUICK RUN (small data, few repetitions)" if plan["quick"] else "")
        + (" — PARTIAL RUN (see the command below)" if partial else "")
    )
    md.append("")
    md.append(
        f"Date {results['started']} (UTC), {results.get('duration_s', 0):.0f} s, commit "
        f"`{mach['commit']}`, made by `python -m bench {' '.join(results.get('argv', []))}`"
        f"; raw runs in `results/{json_name}`."
    )
    md.append("")
    md.append(
        f"Machine: {mach['cpu']}, {mach['cores']} cores, "
        f"{mach['memory_bytes'] / GiB:.0f} GiB, Linux {mach['kernel']}; load average at "
        f"start {', '.join(f'{x:.2f}' for x in mach['loadavg_start'])}."
    )
    md.append("")
    md.append("Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".")
    md.append("")
    d1, d2 = plan["d1"], plan["d2"]
    c = results.get("corpora", {})
    md.append(
        f"Data: D1 {d1['total_bytes'] >> 20} MiB of pre-tokenized rows (`sample_id` int64 + "
        f"2,049 int32 tokens; {_rows(c, 'tokens')} rows) and D2 {d2['total_bytes'] >> 20} MiB "
        f"of text documents ({_rows(c, 'text')} rows), shards of ~{d1['shard_bytes'] >> 20} "
        f"MiB in every system's native format, generated deterministically under "
        f"`bench/data/`. Every figure is the median of {plan['reps']} repetitions "
        f"(D1; D2 and resume/stall: {max(1, plan['reps'] // 2)}), each a fresh process; "
        "± is half the min–max spread relative to the median. All serving is on 127.0.0.1: "
        "one nginx (1 worker, sendfile, bearer token required) for every peer; Ostraca also "
        "through its own registry (uvicorn). The server side's CPU is not in CPU-s/GiB."
    )
    md.append("")
    note = results["notes"].get("ostraca")
    if note:
        md.append(f"**Ostraca rows: {note}.**")
        md.append("")
    for tag, title in (("d1", "D1 tokens"), ("d2", "D2 text")):
        t = s.get(tag, {})
        if not [k for k in t if k != "ratios"]:
            continue
        for temp in ("cold", "warm"):
            if not any(k.endswith(f"/{temp}") and not k.startswith("limit") for k in t):
                continue  # e.g. --quick runs D2 cold only
            md.append(f"## {title}, {temp} cache")
            md.append("")
            md.append(
                "| system | how | samples/s | tokens/s | MB/s delivered | time to first batch"
                " | peak RSS MB (after imports) | peak PSS MB | peak anonymous MB | CPU-s/GiB |"
            )
            md.append("|---|---|---|---|---|---|---|---|---|---|")
            for name in list(systems):
                st = t.get(f"{name}/{temp}")
                if st is None:
                    if name.startswith("ostraca") and note:
                        md.append(f"| {systems[name]['label']} | — | {note} | | | | | | | |")
                    continue
                how = systems[name][temp]
                if not st["ok"]:
                    md.append(
                        f"| {systems[name]['label']} | {how} | failed: {st['error']} "
                        "| | | | | | | |"
                    )
                    continue
                tok = _f(st["tokens_s"], "{:,.0f}") if tag == "d1" else "—"
                md.append(
                    f"| {systems[name]['label']} | {how} | {_f(st['samples_s'])} | {tok} | "
                    f"{_f(st['mb_s'])} | {_f(st['ttfb_s'], '{:.3f} s')} | "
                    f"{_f(st['peak_rss_mb'], spread=False)} "
                    f"({_f(st['rss_at_open_mb'], spread=False)}) | "
                    f"{_f(st['peak_pss_mb'], spread=False)} | "
                    f"{_f(st['peak_anon_mb'], spread=False)}"
                    f" | {_f(st['cpu_s_per_gib'], '{:.1f}', spread=False)} |"
                )
            md.append("")
        md.append(f"### {title}: physical limits (same run)")
        md.append("")
        md.append("| limit | MB/s | time to first batch | CPU-s/GiB |")
        md.append("|---|---|---|---|")
        for name, label in (
            (
                "limit-local-plain/cold",
                "local Arrow IPC, memory-mapped, "
                + ("every token summed" if tag == "d1" else "batches handed out, text untouched")
                + " (page cache dropped)",
            ),
            ("limit-local-plain/warm", "the same, page cache warm"),
            ("limit-local-sha256/cold", "the same + sha256 of every byte, one core (dropped)"),
            ("limit-local-sha256/warm", "the same + sha256, page cache warm (**local limit**)"),
        ):
            st = t.get(name)
            if st:
                md.append(
                    f"| {label} | {_f(st['mb_s'])} | {_f(st['ttfb_s'], '{:.3f} s')} | "
                    f"{_f(st['cpu_s_per_gib'], '{:.1f}', spread=False)} |"
                )
        for par in (1, 4):
            st = t.get(f"limit-curl-{par}")
            if st:
                lab = (
                    "curl from nginx, 1 stream (**network limit**)"
                    if par == 1
                    else "curl from nginx, 4 transfers in parallel"
                )
                md.append(
                    f"| {lab} | {_f(st['mb_s'])} | — | "
                    f"{_f(st['cpu_s_per_gib'], '{:.1f}', spread=False)} |"
                )
        md.append("")
    # targets
    md.append("## Targets (recorded, not asserted)")
    md.append("")
    md.append("| target | Ostraca via registry | Ostraca, blobs via nginx |")
    md.append("|---|---|---|")
    r1 = s.get("d1", {}).get("ratios", {})
    rows = [
        ("cold (loopback) ≥ 0.8× network limit (curl, 1 stream)", "cold_vs_curl1"),
        ("cold vs curl with 4 parallel transfers (for reference)", "cold_vs_curl4"),
        ("cold ≥ best peer (cold)", "cold_vs_best_peer"),
        ("warm ≥ 0.9× local limit (mmap + sha256, warm)", "warm_vs_local_sha256_warm"),
        ("warm vs local mmap without sha256 (for reference)", "warm_vs_local_plain_warm"),
        ("warm vs best peer (warm)", "warm_vs_best_peer"),
    ]
    for label, key in rows:
        md.append(
            f"| {label} | {_ratio(r1.get('ostraca', {}).get(key))} | "
            f"{_ratio(r1.get('ostraca-nginx', {}).get(key))} |"
        )
    d1t = s.get("d1", {})
    for o in ("ostraca", "ostraca-nginx"):
        st = d1t.get(f"{o}/cold")
        if not st or not st.get("ttfb_s"):
            continue
        curl = d1t.get("limit-curl-1", {}).get("mb_s")
        shard = (plan["d1"]["shard_bytes"]) / 1e6
        if curl:
            bound = shard / curl["median"] + 0.1
            md.append(
                f"| time to first batch ≤ one shard's download + 100 ms ({o}) | "
                f"{st['ttfb_s']['median']:.3f} s vs {bound:.3f} s: "
                f"{'met' if st['ttfb_s']['median'] <= bound else 'NOT met'} | |"
            )
    for o in ("ostraca", "ostraca-nginx"):
        half = s.get("half", {}).get(o, {}).get("peak_rss_mb")
        full = d1t.get(f"{o}/cold", {}).get("peak_rss_mb") if d1t.get(f"{o}/cold") else None
        half_a = s.get("half", {}).get(o, {}).get("peak_anon_mb")
        full_a = d1t.get(f"{o}/cold", {}).get("peak_anon_mb") if d1t.get(f"{o}/cold") else None
        if half_a and full_a:
            md.append(
                f"| peak memory flat in dataset size ({o}): peak *anonymous* memory (heap, "
                f"buffers) of a cold read stopped at 50% vs the whole of D1 | "
                f"{half_a['median']:.0f} MB vs {full_a['median']:.0f} MB | |"
            )
        if half and full:
            md.append(
                f"| peak memory flat in dataset size ({o}): peak RSS of a cold read stopped at "
                f"50% vs the whole of D1 | {half['median']:.0f} MB vs {full['median']:.0f} MB | |"
            )
    md.append("")
    # behaviour
    md.append("## Resume, coverage, corruption, data stall (D1)")
    md.append("")
    md.append(
        "| system | resume at 50%: latency to first resumed sample | exact `sample_id` order"
        " | 2 ranks × 2 workers: duplicates / misses | one corrupted byte in shard 1 | "
        "data-stall fraction (tiny CPU Transformer) |"
    )
    md.append("|---|---|---|---|---|---|")
    for name in systems:
        rs = s.get("resume", {}).get(name)
        cov = s.get("coverage", {}).get(name)
        cor = s.get("corrupt", {}).get(name)
        tr = s.get("train", {}).get(name)
        if not any((rs, cov, cor, tr)):
            continue
        if rs is None:
            lat, exact = "—", "—"
        elif rs.get("error") and not rs.get("latency_s"):
            lat, exact = f"not supported/failed: {rs['error']}", "—"
        else:
            lat = _f(rs["latency_s"], "{:.3f} s")
            if rs.get("half_peak_rss_mb"):
                lat += f" (peak RSS of the first half: {rs['half_peak_rss_mb']['median']:.0f} MB)"
            chk = rs.get("check") or {}
            exact = (
                "exact"
                if rs["exact"]
                else f"NOT exact (first difference at row {chk.get('first_difference_at')}, "
                f"{chk.get('delivered_rows')} of {chk.get('reference_rows')} rows, "
                f"{chk.get('duplicates')} duplicates)"
            )
        if cov is None:
            cv = "—"
        elif cov.get("ok"):
            cv = f"{cov['duplicates']} / {cov['misses']} (of {cov['expected']})"
        else:
            cv = f"failed: {cov.get('error')}"
        if cor is None:
            cr = "—"
        elif cor["refused"]:
            cr = f"refused: {cor['error']}"
        else:
            cr = f"delivered {cor['rows']} rows, {cor['bad_rows']} with wrong tokens, no error"
        if tr is None:
            st_ = "—"
        elif tr.get("stall"):
            st_ = f"{tr['stall']['median']:.3f} (step {tr['step_s']['median'] * 1000:.0f} ms)"
        else:
            st_ = f"failed: {tr.get('error')}"
        md.append(f"| {systems[name]['label']} | {lat} | {exact} | {cv} | {cr} | {st_} |")
    md.append("")
    load = s.get("load")
    if load:
        md.append(
            "## Registry under load (loopback; GET driven by wrk, HEAD by an asyncio client "
            f"since wrk 4.1 hangs on HEAD; {load['seconds_per_cell']:g} s per cell; GET is "
            f"`Range: {load['range']}`)"
        )
        md.append("")
        if load.get("note"):
            md.append(load["note"])
            md.append("")
        md.append(
            "| server | request | generator | connections | requests/s | p50 ms | p99 ms | errors |"
        )
        md.append("|---|---|---|---|---|---|---|---|")
        for r in load["rows"]:

            def ms(x: Any) -> str:
                return f"{x:.2f}" if isinstance(x, float) else "—"

            rps = f"{r['rps']:,.0f}" if r.get("rps") else "—"
            md.append(
                f"| {r['server']} | {r['method']} | {r.get('generator', 'wrk')} | "
                f"{r['conns']} | {rps} | "
                f"{ms(r.get('p50_ms'))} | {ms(r.get('p99_ms'))} | {r['errors']} |"
            )
        md.append("")
    md.append("## How each system is set up")
    md.append("")
    for d in systems.values():
        md.append(f"- **{d['label']}** — cold: {d['cold']}; warm: {d['warm']}.")
    md.append(
        "- MosaicML Streaming and LitData have no plain-HTTP backend: each gets the smallest "
        "downloader it accepts (`bench/peers/httpshim.py`: a whole-file GET with the bearer "
        'header into the cache file), hence "with shim". Streaming\'s image/video '
        "subpackages are skipped at import (they need torchvision, whose PyPI build needs "
        "CUDA torch); the MDS reader does not use them."
    )
    md.append(
        "- Coverage runs both ranks at once (gloo on loopback), each a DataLoader with 2 "
        "worker processes; Streaming and LitData split by their own rules, HF by "
        "`split_dataset_by_node`, WebDataset by `split_by_node`/`split_by_worker`."
    )
    md.append(
        "- Defaults are kept: LitData's `StreamingDataset` sets `drop_last=True` when it runs "
        "distributed (equal work per rank), which is where its coverage misses come from; "
        "WebDataset has no resumable state. Ostraca's resume row goes through its PyTorch "
        "adapter (`ShardDataset`, default `block_rows=65,536`), which rebuilds the current "
        "block on resume; its throughput rows read `VerifiedDataset.read_shards` directly."
    )
    md.append(
        "- Ostraca verifies a shard chunk by chunk against its signed chunk list (and its "
        "length) as it enters its cache; a cache hit is checked by size and memory-mapped, "
        "not re-hashed. Its warm rows therefore do no sha256 work, and the local limit "
        "*without* sha256 is the like-for-like bound for them."
    )
    md.append(
        "- Corruption: one byte at the middle of shard 1 (each format's own file) XOR 0xFF; "
        "every delivered row is compared with the deterministic generator."
    )
    md.append("")
    if plots:
        md.append("## Plots")
        md.append("")
        for p in plots:
            md.append(f"![{p}](results/{p})")
        md.append("")
    others = sorted(
        p.name for p in RESULTS_DIR.glob("20*.md") if p.name != json_name.replace(".json", ".md")
    )
    if others:
        md.append("## Other runs")
        md.append("")
        md.append(
            "Partial runs (a subset of systems or phases, other sizes) write their own tables "
            "and never replace this file: " + ", ".join(f"[{n}](results/{n})" for n in others) + "."
        )
        md.append("")
    extra = results.get("profile")
    if extra:
        md.append("## Shortfalls: profile summary")
        md.append("")
        md.append(extra)
        md.append("")
    return "\n".join(md) + "\n"


def _rows(c: dict[str, Any], kind: str) -> str:
    for v in c.values():
        if v.get("kind") == kind:
            return f"{v['rows']:,}"
    return "?"


# ── plots ──────────────────────────────────────────────────────────────────────────────────────


def plots(s: dict[str, Any], out_dir: Path, stamp: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[str] = []
    t = s.get("d1", {})
    names = sorted({k.split("/")[0] for k in t if "/" in k and not k.startswith("limit")})
    order = [n for n in ("ostraca", "ostraca-nginx", "hf", "wds", "mds", "lit") if n in names]
    for fig_key, ylabel, fname in (
        ("mb_s", "MB/s delivered (D1)", "throughput"),
        ("ttfb_s", "time to first batch, s (D1)", "ttfb"),
        ("peak_rss_mb", "peak RSS of the process tree, MB (D1)", "memory"),
        ("cpu_s_per_gib", "CPU-seconds per GiB delivered (D1)", "cpu"),
    ):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        width = 0.38
        for j, temp in enumerate(("cold", "warm")):
            meds, lo, hi = [], [], []
            for n in order:
                st = t.get(f"{n}/{temp}", {}).get(fig_key)
                meds.append(st["median"] if st else 0)
                lo.append(st["median"] - st["min"] if st else 0)
                hi.append(st["max"] - st["median"] if st else 0)
            xs = [i + (j - 0.5) * width for i in range(len(order))]
            ax.bar(xs, meds, width, yerr=[lo, hi], capsize=3, label=temp)
        if fig_key == "mb_s":
            for name, style in (("limit-curl-1", "--"), ("limit-local-sha256/warm", ":")):
                st = t.get(name, {}).get("mb_s")
                if st:
                    ax.axhline(
                        st["median"],
                        linestyle=style,
                        color="k",
                        linewidth=1,
                        label=name.replace("limit-", "limit: "),
                    )
        ax.set_xticks(range(len(order)), order)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        name = f"{stamp}-{fname}.png"
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        made.append(name)
    load = s.get("load")
    if load and load.get("rows"):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, method in zip(axes, ("HEAD", "GET"), strict=True):
            for server in sorted({r["server"] for r in load["rows"]}):
                rows = [r for r in load["rows"] if r["server"] == server and r["method"] == method]
                ax.plot(
                    [r["conns"] for r in rows],
                    [r["rps"] or 0 for r in rows],
                    marker="o",
                    label=server,
                )
            ax.set_xscale("log")
            ax.set_xlabel("concurrent connections")
            ax.set_ylabel("requests/s")
            ax.set_title(method + (" (64 KiB range)" if method == "GET" else ""))
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        name = f"{stamp}-load.png"
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        made.append(name)
    return made
