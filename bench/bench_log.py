"""The transparency log's costs (issue 13; not a test). One process, one core, SQLite.

* append: ``tlog.append_entries`` for one statement per transaction (what the ``after_flush``
  hook adds to accepting a statement), on a log already holding ``--entries`` entries;
* inclusion verify: ``verify_inclusion`` at tree size 10**6 (a tree of identical leaves, whose
  nodes are known per level, so the proof is real without building the tree);
* proof size: the JSON of an inclusion and a consistency proof at 10**6 entries;
* log verify: ``ostraca log verify`` (``cli.log.verify_log``) against a real registry over HTTP;
* open_dataset extra: ``check_statements`` for a manifest and a grant, first use (pins, reads
  every entry after the grant) and then each later open (reads only new entries).

Writes ``bench/results/log.json`` and prints a table.

    python bench/bench_log.py [--entries 20000] [--appends 1000]

Targets: append <= 1 ms, verify <= 0.2 ms, proof <= 1 KB, log verify >= 50k entries/s,
open_dataset <= 10 ms more.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
from sqlalchemy import create_engine

from ostraca.cli.log import verify_log
from ostraca.client.api import RegistryClient
from ostraca.client.config import load_config
from ostraca.client.keystore import save_signing_key
from ostraca.client.publishing import publish
from ostraca.client.tlog import check_statements
from ostraca.protocol_spec import Envelope
from ostraca.protocol_spec.keys import SigningKey
from ostraca.protocol_spec.merkle import (
    ConsistencyProof,
    InclusionProof,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    tree_root,
    verify_inclusion,
)
from ostraca.protocol_spec.models import utc_now
from ostraca.server.migrate import upgrade_to_head
from ostraca.server.settings import Settings
from ostraca.server.tlog import append_entries

RESULTS = Path(__file__).resolve().parent / "results"
MILLION = 10**6
ENTRY = b'{"payload":"' + b"A" * 800 + b'","payloadType":"application/vnd.ostraca.x+json"}'


def _ms(fn: Callable[[], object], runs: int) -> float:
    """Median milliseconds of ``fn`` over ``runs`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _uniform_tree() -> Callable[[int, int], bytes]:
    """Nodes of a tree whose leaves are all alike: one hash per level."""
    levels = [leaf_hash(ENTRY)]
    for _ in range(64):
        levels.append(node_hash(levels[-1], levels[-1]))
    return lambda level, _index: levels[level]


def proofs_at_a_million() -> dict[str, float]:
    node = _uniform_tree()
    root = tree_root(MILLION, node)
    index = MILLION - 12345
    path = inclusion_proof(index, MILLION, node)
    leaf = node(0, 0)
    verify_ms = _ms(
        lambda: verify_inclusion(leaf=leaf, index=index, tree_size=MILLION, proof=path, root=root),
        2000,
    )
    incl = InclusionProof(index=index, tree_size=MILLION, hashes=tuple(path)).to_dict()
    cons_path = consistency_proof(MILLION - 777, MILLION, node)
    cons = ConsistencyProof(
        old_size=MILLION - 777, new_size=MILLION, hashes=tuple(cons_path)
    ).to_dict()
    return {
        "inclusion_verify_ms": round(verify_ms, 4),
        "inclusion_proof_hashes": len(path),
        "inclusion_proof_json_bytes": len(json.dumps(incl, separators=(",", ":"))),
        "consistency_proof_json_bytes": len(json.dumps(cons, separators=(",", ":"))),
    }


def append_cost(url: str, appends: int) -> float:
    engine = create_engine(url)
    times = []
    for i in range(appends):
        with engine.begin() as conn:
            start = time.perf_counter()
            append_entries(conn, [(f"{i:064x}", ENTRY + str(i).encode())])
            times.append(time.perf_counter() - start)
    engine.dispose()
    return statistics.median(times) * 1000


def fill(url: str, entries: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for start in range(0, entries, 5000):
            batch = range(start, min(entries, start + 5000))
            append_entries(conn, [(f"f{i:063x}", ENTRY + str(i).encode()) for i in batch])
    engine.dispose()


_SERVE = """
import sys, uvicorn
from pathlib import Path
from ostraca.server.app import create_app
from ostraca.server.settings import Settings
uvicorn.run(create_app(Settings(data_dir=Path(sys.argv[1]))), port=int(sys.argv[2]),
            log_level="warning")
"""


@contextmanager
def _registry(data_dir: Path) -> Iterator[str]:
    """A registry in its own process (as deployed: the client does not share its GIL)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(data_dir), str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/healthz")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _identity(home: Path, url: str, name: str, kind: str) -> RegistryClient:
    key = SigningKey.generate()
    save_signing_key(key, home / "identity.pem", profile={"name": name, "kind": kind})
    client = RegistryClient(load_config(home=home, registry=url))
    client.register(name, kind, "bench")
    client.login()
    return client


def open_cost(url: str, tmp: Path, runs: int) -> dict[str, float]:
    pub = _identity(tmp / "pub", url, "pub", "institution")
    pub.create_namespace("bench")
    publish(
        pub,
        pa.table({"x": [1, 2, 3]}),
        dataset="bench/d",
        license="CC0-1.0",
        terms="t",
        progress=False,
    )
    res = _identity(tmp / "res", url, "res", "researcher")
    request = res.request_access("bench/d", purpose="bench")
    grant = pub.approve(request.request_id, expires=utc_now() + timedelta(days=1))
    envelopes = [res.get_manifest_envelope("bench/d"), Envelope.from_dict(grant.envelope)]
    start = time.perf_counter()
    check_statements(res, envelopes, now=utc_now())
    first = (time.perf_counter() - start) * 1000
    later = _ms(lambda: check_statements(res, envelopes, now=utc_now()), runs)
    with httpx.Client(base_url=url) as http:
        rtt = _ms(lambda: http.get("/healthz"), runs)
    pub.close()
    res.close()
    return {
        "open_extra_first_ms": round(first, 2),
        "open_extra_ms": round(later, 2),
        "open_extra_round_trips": 2,  # the checkpoint, then GET /v1/log/proofs
        "healthz_round_trip_ms": round(rtt, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--appends", type=int, default=1000)
    args = parser.parse_args()
    out: dict[str, Any] = {"entries": args.entries, "load_average_1m": os.getloadavg()[0]}
    out.update(proofs_at_a_million())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "registry"
        data.mkdir()
        url = Settings(data_dir=data).sqlalchemy_url
        upgrade_to_head(url)
        fill(url, args.entries)
        out["append_ms"] = round(append_cost(url, args.appends), 4)
        with _registry(data) as registry:
            cold = verify_log(registry, home=tmp / "monitor", now=utc_now())
            warm = verify_log(registry, home=tmp / "monitor", now=utc_now())
            out["log_verify_cold_entries_per_s"] = round(cold.size / cold.seconds)
            out["log_verify_entries_per_s"] = round(warm.size / warm.seconds)
            out.update(open_cost(registry, tmp, 50))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "log.json").write_text(json.dumps(out, indent=2) + "\n")
    targets = {
        "append_ms": "<= 1",
        "inclusion_verify_ms": "<= 0.2",
        "inclusion_proof_json_bytes": "<= 1024",
        "log_verify_entries_per_s": ">= 50000",
        "open_extra_ms": "<= 10",
    }
    print(f"{'measure':<32} {'value':>12}  target")
    for key, value in out.items():
        print(f"{key:<32} {value:>12}  {targets.get(key, '')}")


if __name__ == "__main__":
    main()
