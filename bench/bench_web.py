"""How fast the registry renders its catalog page with 10,000 datasets (target: ≤ 200 ms).

A fresh SQLite registry (migrated) gets ``--datasets`` catalog rows in 100 namespaces under
five licences, inserted straight into the tables (the catalog reads only the dataset rows;
publishing 10,000 real versions would measure the publisher, not the page). Each page is then
asked for ``--runs`` times through the real app in-process (routing, database, Jinja2), and
the median, 95th percentile and maximum are reported: the first page, a search, each filter,
and the last page.

    .venv/bin/python bench/bench_web.py [--datasets 10000] [--runs 30]

Writes bench/results/web.json. Not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from ostraca.server.app import create_app
from ostraca.server.db import Database, Dataset, Namespace, Principal, make_engine
from ostraca.server.migrate import upgrade_to_head
from ostraca.server.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_S = 0.2
LICENSES = ("CC-BY-4.0", "CC0-1.0", "MIT", "Apache-2.0", "LicenseRef-acme-terms")


def _seed(url: str, count: int) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    keyid = hashlib.sha256(b"bench").hexdigest()
    terms = "Research use only."
    with Database(make_engine(url)).begin() as session:
        owner = Principal(
            keyid=keyid, name="Bench", kind="institution", affiliation="", created=now
        )
        session.add(owner)
        session.flush()
        spaces = [Namespace(name=f"ns-{i:03d}", owner_id=owner.id, created=now) for i in range(100)]
        session.add_all(spaces)
        session.flush()
        session.add_all(
            Dataset(
                name=f"{spaces[i % 100].name}/set-{i:05d}",
                namespace_id=spaces[i % 100].id,
                latest_version=1 + i % 7,
                description=f"Benchmark corpus number {i}, books and news",
                license=LICENSES[i % len(LICENSES)],
                terms=terms,
                terms_sha256=hashlib.sha256(terms.encode()).hexdigest(),
                columns=[{"name": "text", "type": "string"}],
                total_rows=1000 + i,
                total_bytes=1_000_000 + i,
                publisher=keyid,
                created=now,
                updated=now,
            )
            for i in range(count)
        )


def _time(client: TestClient, path: str, runs: int) -> dict[str, float]:
    client.get(path).raise_for_status()  # warm: templates compiled, connections open
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(path)
        samples.append(time.perf_counter() - start)
        response.raise_for_status()
    samples.sort()
    return {
        "median_s": statistics.median(samples),
        "p95_s": samples[max(0, round(0.95 * len(samples)) - 1)],
        "max_s": samples[-1],
        "html_bytes": len(response.content),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        upgrade_to_head(settings.database_url)
        _seed(settings.sqlalchemy_url, args.datasets)
        last = -(-args.datasets // 50)
        paths = {
            "first page": "/",
            "search 'set-0777'": "/?q=set-0777",
            "search 'books' (all match)": "/?q=books",
            "licence MIT": "/?license=MIT",
            "namespace ns-042": "/?namespace=ns-042",
            f"last page ({last})": f"/?page={last}",
        }
        with TestClient(create_app(settings)) as client:
            rows = {name: _time(client, path, args.runs) for name, path in paths.items()}
    print(f"catalog of {args.datasets:,} datasets, {args.runs} runs each (target ≤ 200 ms)")
    print(f"{'page':<28} {'median':>9} {'p95':>9} {'max':>9} {'HTML':>9}")
    for name, r in rows.items():
        print(
            f"{name:<28} {r['median_s'] * 1e3:>7.1f}ms {r['p95_s'] * 1e3:>7.1f}ms "
            f"{r['max_s'] * 1e3:>7.1f}ms {r['html_bytes'] / 1024:>7.1f}KB"
        )
    worst = max(r["p95_s"] for r in rows.values())
    print(f"worst p95 {worst * 1e3:.1f} ms: {'meets' if worst <= TARGET_S else 'misses'} target")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "web.json").write_text(
        json.dumps(
            {
                "datasets": args.datasets,
                "runs": args.runs,
                "target_s": TARGET_S,
                "worst_p95_s": worst,
                "meets_target": worst <= TARGET_S,
                "pages": rows,
                "machine": {"python": platform.python_version(), "platform": platform.platform()},
                "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
