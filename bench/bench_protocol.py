"""Sign and verify dataset manifests of 10 … 1,000,000 shards (not a test).

For each size: build the :class:`DatasetManifest` and sign it (canonical JSON + Ed25519 over
the PAE), then parse the envelope bytes and run the full manifest verification (SPEC.md 5.1,
checks M1–M8 against a trusted previous version). Each size twice, side by side: a
spec_version 1 manifest, and a spec_version 2 one with a column group (``ids``: each shard
lists a second blob, SPEC 2.6). Prints a table and writes ``bench/results/protocol.json`` and
``bench/results/protocol.md``.

    python bench/bench_protocol.py [--sizes 10,1000,100000,1000000] [--repeat 3]

Target: a 100,000-shard manifest verifies in under 1 s.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ostraca.protocol_spec import (
    Column,
    DatasetManifest,
    Envelope,
    ShardEntry,
    SigningKey,
    Verified,
    sign_statement,
    verify_manifest,
)
from ostraca.protocol_spec.models import ColumnGroup, GroupBlob

RESULTS = Path(__file__).resolve().parent / "results"
KEY = SigningKey.from_seed(hashlib.sha256(b"ostraca bench key").digest())
NOW = datetime(2024, 6, 1, tzinfo=UTC)
TARGET_SHARDS, TARGET_SECONDS = 100_000, 1.0


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"".join(parts)).hexdigest()


def _shards(n: int, grouped: bool) -> list[ShardEntry]:
    def group(i: bytes) -> list[GroupBlob]:
        blob = GroupBlob(group="ids", sha256=_digest(b"ids", i), bytes=400_000, chunks=_digest(i))
        return [blob]

    return [
        ShardEntry(
            sha256=_digest(i.to_bytes(8, "big")),
            bytes=64 * 1024 * 1024 - (i % 4096),
            rows=50_000 + (i % 1000),
            chunks=_digest(b"chunks", i.to_bytes(8, "big")),
            groups=group(i.to_bytes(8, "big")) if grouped else None,
        )
        for i in range(n)
    ]


def _manifest(version: int, previous: str | None, shards: list[ShardEntry]) -> DatasetManifest:
    grouped = shards[0].groups is not None
    return DatasetManifest(
        dataset="bench/books",
        version=version,
        previous=previous,
        created=datetime(2024, 5, 1, tzinfo=UTC),
        publisher=KEY.keyid,
        license="CC-BY-4.0",
        terms="Research use only.",
        description="Benchmark manifest.",
        arrow_schema="QUJD",
        columns=[Column(name="text", type="large_string"), Column(name="id", type="int64")],
        chunk_bytes=2 * 1024 * 1024,
        shards=shards,
        total_rows=sum(s.rows for s in shards),
        total_bytes=sum(b.bytes for s in shards for b in s.blobs()),
        column_groups=[ColumnGroup(name="ids", columns=["id"])] if grouped else None,
        spec_version=2 if grouped else 1,
    )


def measure(n: int, repeat: int, grouped: bool) -> dict[str, Any]:
    keys = {KEY.keyid: KEY.public}
    shards = _shards(n, grouped)
    v1 = verify_manifest(
        sign_statement(_manifest(1, None, shards[:1]), [KEY]), publisher_keys=keys, now=NOW
    )
    sign_times, verify_times, verify_cpu = [], [], []
    data = b""
    env: Envelope | None = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        env = sign_statement(_manifest(2, v1.digest, shards), [KEY])
        sign_times.append(time.perf_counter() - t0)
        data = env.to_json()
    assert env is not None
    for _ in range(repeat):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        verified: Verified[DatasetManifest] = verify_manifest(
            Envelope.from_json(data), publisher_keys=keys, now=NOW, previous=v1
        )
        verify_times.append(time.perf_counter() - t0)
        verify_cpu.append(time.process_time() - c0)
        assert len(verified.statement.shards) == n
    return {
        "shards": n,
        "column_groups": int(grouped),
        "payload_bytes": len(env.payload),
        "envelope_bytes": len(data),
        "build_sign_s": min(sign_times),
        "build_sign_median_s": statistics.median(sign_times),
        "verify_s": min(verify_times),
        "verify_median_s": statistics.median(verify_times),
        "verify_cpu_s": min(verify_cpu),
        "repeat": repeat,
    }


def render_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| shards | column groups | payload bytes | envelope bytes | build+sign s | verify s "
        "| verify CPU s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['shards']:,} | {r['column_groups']} | {r['payload_bytes']:,} "
        f"| {r['envelope_bytes']:,} | {r['build_sign_s']:.3f} | {r['verify_s']:.3f} "
        f"| {r['verify_cpu_s']:.3f} |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sign and verify manifests of many sizes.")
    parser.add_argument("--sizes", default="10,1000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (1 for 1M shards)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = []
    for n, grouped in ((int(s), g) for s in args.sizes.split(",") for g in (False, True)):
        row = measure(n, 1 if n >= 1_000_000 else args.repeat, grouped)
        rows.append(row)
        print(
            f"{n:>9,} shards, {int(grouped)} group(s): payload {row['payload_bytes']:>12,} B, "
            f"envelope {row['envelope_bytes']:>12,} B, build+sign {row['build_sign_s']:7.3f} s, "
            f"verify {row['verify_s']:7.3f} s",
            flush=True,
        )
    env = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    target = next((r for r in rows if r["shards"] == TARGET_SHARDS), None)  # spec_version 1
    met = None if target is None else target["verify_s"] < TARGET_SECONDS
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "protocol.json").write_text(
        json.dumps({"environment": env, "target_met": met, "results": rows}, indent=2) + "\n"
    )
    table = render_table(rows)
    note = (
        f"Verify = parse envelope bytes + SPEC.md 5.1 (M1–M8) against a trusted version 1. "
        f"Times are wall clock (verify CPU s: this process's CPU time, which other load on the "
        f"machine does not inflate; load average {os.getloadavg()[0]:.2f} at the end, other "
        f"jobs on the machine). Column groups 1: spec_version 2, each shard with one group blob. "
        f"Best of {args.repeat} runs (1 for 1,000,000 shards). Python {env['python']}, "
        f"{env['cpus']} CPUs, {env['date']}. Target: {TARGET_SHARDS:,} shards verify in "
        f"< {TARGET_SECONDS:g} s — {'met' if met else 'not met' if met is False else 'not run'}."
    )
    (args.out / "protocol.md").write_text(f"# Protocol benchmark\n\n{table}\n\n{note}\n")
    print()
    print(table)
    print(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
