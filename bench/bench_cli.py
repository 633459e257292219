"""How fast the command line and the SDK start, side by side in one run:

- ``python -c pass`` (the interpreter's floor) and ``python -c "import typer"`` (the CLI
  framework's floor);
- ``ostraca --help``;
- ``python -c "import ostraca.client"``;
- ``ostraca datasets --json`` against a local registry (a child process, SQLite, one dataset).

Each row is a fresh process, the median of ``--runs`` (min..max beside it), rounds interleaved
so that a change in machine load hits every row alike.

    .venv/bin/python bench/bench_cli.py [--runs 15]

Writes bench/results/cli.json and bench/results/cli.md. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from ostraca.client.api import RegistryClient
from ostraca.client.config import load_config
from ostraca.client.keystore import save_signing_key
from ostraca.client.publishing import publish
from ostraca.protocol_spec import SigningKey
from ostraca.server.process import registry_process

RESULTS = Path(__file__).resolve().parent / "results"
BIN = Path(sys.executable).parent
TARGETS = {"ostraca --help": 0.3, "import ostraca.client": 0.3, "ostraca datasets --json": 0.5}


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def _seed(home: Path, url: str) -> None:
    key = SigningKey.generate()
    save_signing_key(key, home / "identity.pem", profile={"name": "bench", "kind": "institution"})
    client = RegistryClient(load_config(home=home, registry=url), key=key)
    client.register("bench", "institution", "")
    client.login()
    client.create_namespace("bench")
    publish(
        client,
        pa.table({"x": list(range(1000))}),
        dataset="bench/numbers",
        license="MIT",
        terms="none",
        progress=False,
    )
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp, registry_process(Path(tmp) / "registry") as url:
        home = Path(tmp) / "home"
        _seed(home, url)
        env = {**os.environ, "OSTRACA_HOME": str(home), "OSTRACA_REGISTRY": url}
        rows = {
            "python -c pass": [py, "-c", "pass"],
            "python -c 'import typer'": [py, "-c", "import typer"],
            "ostraca --help": [str(BIN / "ostraca"), "--help"],
            "import ostraca.client": [py, "-c", "import ostraca.client"],
            "ostraca datasets --json": [str(BIN / "ostraca"), "datasets", "--json"],
        }
        times: dict[str, list[float]] = {name: [] for name in rows}
        for argv in rows.values():
            _time(argv, env)  # warm the page cache and bytecode
        for _ in range(args.runs):
            for name, argv in rows.items():
                times[name].append(_time(argv, env))
    out = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": args.runs,
        "rows": {
            name: {
                "median_s": statistics.median(t),
                "min_s": min(t),
                "max_s": max(t),
                "target_s": TARGETS.get(name),
            }
            for name, t in times.items()
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# CLI and SDK start-up (bench/bench_cli.py)",
        "",
        f"{args.runs} fresh processes per row, rounds interleaved; {os.cpu_count()} cores.",
        "",
        "| what | median s | min..max s | target s | met |",
        "|---|---|---|---|---|",
    ]
    for name, row in out["rows"].items():
        target = row["target_s"]
        met = "-" if target is None else ("yes" if row["median_s"] <= target else "no")
        lines.append(
            f"| {name} | {row['median_s']:.3f} | {row['min_s']:.3f}..{row['max_s']:.3f} | "
            f"{'-' if target is None else target} | {met} |"
        )
    (RESULTS / "cli.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
