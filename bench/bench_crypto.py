"""AES-256-GCM chunk sealing/opening beside SHA-256, one core, 1-4 MiB chunks (not a test).

The verified read path hashes every chunk (SPEC 2.5) and, for an encrypted group, opens it
(ENCRYPTION.md 2): the cost that matters is opening next to hashing on the same bytes. Each row
times ``ShardCipher.seal_chunk``, ``ShardCipher.open_chunk_into`` (into a reused buffer, as the
client does) and ``hashlib.sha256`` over the same chunk, interleaved repetition by repetition,
and prints MB/s per core side by side. A second table writes a table into shards with the
client's ``ShardWriter`` (hashing while writing) and decodes them back, plaintext and sealed,
side by side: the whole publish-side encode and read-side decode, without the network. Writes
``bench/results/crypto.json``.

    python bench/bench_crypto.py [--sizes 1,2,4] [--seconds 0.5] [--table-mib 32]

Targets: opening runs at least as fast as hashing; sealed encode and decode run at ≥ 0.9× of
plaintext.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from ostraca.client.encryption import opened
from ostraca.client.shards import ShardWriter
from ostraca.client.verified import decode_shard
from ostraca.protocol_spec.crypto import TAG_BYTES, DataKey, GroupContext, ShardCipher

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1024 * 1024
CONTEXT = GroupContext(dataset="bench/crypto", version=1, group="default")


def _rate(fn: Callable[[], object], nbytes: int, seconds: float) -> float:
    """MB/s (10^6 bytes per second) of ``fn`` over ``nbytes``, repeated for ``seconds``."""
    fn()
    runs, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or runs < 3:
        fn()
        runs += 1
    return nbytes * runs / elapsed / 1e6


def measure(chunk_mib: int, seconds: float, repeat: int) -> dict[str, float | int]:
    chunk_bytes = chunk_mib * MiB
    cipher = ShardCipher(DataKey.generate(), context=CONTEXT, shard=0, chunk_bytes=chunk_bytes)
    piece = os.urandom(chunk_bytes - TAG_BYTES)
    sealed = cipher.seal_chunk(0, piece, final=False)
    out = memoryview(bytearray(len(piece)))
    rates: dict[str, list[float]] = {"seal": [], "open": [], "sha256": []}
    for _ in range(repeat):
        rates["seal"].append(
            _rate(lambda: cipher.seal_chunk(0, piece, final=False), chunk_bytes, seconds)
        )
        rates["open"].append(
            _rate(lambda: cipher.open_chunk_into(0, sealed, out, final=False), chunk_bytes, seconds)
        )
        rates["sha256"].append(_rate(lambda: hashlib.sha256(sealed).digest(), chunk_bytes, seconds))
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "chunk_mib": chunk_mib,
        "seal_mb_s": round(med["seal"]),
        "open_mb_s": round(med["open"]),
        "sha256_mb_s": round(med["sha256"]),
        "open_over_sha256": round(med["open"] / med["sha256"], 2),
    }


def _table(mib: int) -> pa.Table:
    rows = mib * MiB // 64
    return pa.table(
        {"id": pa.array(range(rows), pa.int64()), "blob": pa.array([os.urandom(56)] * rows)}
    )


def shard_paths(table: pa.Table, *, sealed: bool, repeat: int) -> dict[str, float]:
    """Median seconds to encode ``table`` into 8 MiB shards (hashed while written) and to
    verify and decode them back (every chunk hashed, as a reader does)."""
    key = DataKey.generate()
    chunk = 2 * MiB

    def seal(shard: int, group: str) -> ShardCipher:
        context = GroupContext(dataset="bench/crypto", version=1, group=group)
        return ShardCipher(key, context=context, shard=shard, chunk_bytes=chunk)

    encode, decode = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            writer = ShardWriter(
                Path(tmp),
                table.schema,
                shard_bytes=8 * MiB,
                chunk_bytes=chunk,
                compression="none",
                seal=seal if sealed else None,
            )
            for batch in table.to_batches(max_chunksize=65536):
                writer.write(batch)
            shards = writer.close()
            encode.append(time.perf_counter() - start)
            start = time.perf_counter()
            for i, shard in enumerate(shards):
                view = memoryview(shard.path.read_bytes())
                for at in range(0, len(view), chunk):  # the reader's chunk check (SPEC 2.5)
                    hashlib.sha256(view[at : at + chunk]).digest()
                source = (
                    opened(view, size=shard.bytes, cipher=seal(i, "default")) if sealed else view
                )
                for _batch in decode_shard(
                    source, full_schema=table.schema, columns=None, rows=shard.rows, what="b"
                ):
                    pass
            decode.append(time.perf_counter() - start)
    return {"encode_s": statistics.median(encode), "decode_s": statistics.median(decode)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,2,4", help="chunk sizes in MiB")
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--table-mib", type=int, default=32, help="table size for the shard rows")
    args = parser.parse_args(argv)
    rows = [measure(int(s), args.seconds, args.repeat) for s in args.sizes.split(",")]
    print(f"{'chunk':>6} {'seal MB/s':>10} {'open MB/s':>10} {'sha256 MB/s':>12} {'open/sha':>9}")
    for r in rows:
        print(
            f"{r['chunk_mib']:>4}Mi {r['seal_mb_s']:>10} {r['open_mb_s']:>10} "
            f"{r['sha256_mb_s']:>12} {r['open_over_sha256']:>9}"
        )
    table = _table(args.table_mib)
    plain = shard_paths(table, sealed=False, repeat=args.repeat)
    sealed = shard_paths(table, sealed=True, repeat=args.repeat)
    paths = {
        "table_mib": args.table_mib,
        "plain": plain,
        "sealed": sealed,
        "encode_ratio": round(plain["encode_s"] / sealed["encode_s"], 2),
        "decode_ratio": round(plain["decode_s"] / sealed["decode_s"], 2),
    }
    print(f"\n{args.table_mib} MiB table   plaintext   sealed   speed sealed/plaintext")
    for step in ("encode", "decode"):
        p, e = plain[f"{step}_s"], sealed[f"{step}_s"]
        print(f"{step:>14} {p:>9.3f}s {e:>7.3f}s {p / e:>10.2f}x")
    RESULTS.mkdir(exist_ok=True)
    report = {
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
        "shard_paths": paths,
    }
    (RESULTS / "crypto.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
