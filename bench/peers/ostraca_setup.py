"""Ostraca's side of the benchmark: its registry (uvicorn on loopback, SQLite, migrated) as a child
process, a publisher and a researcher identity, each corpus published through the real publish
path, and a grant — everything a researcher's ``open_dataset`` needs.

Run as a module it is the registry process: ``python -m bench.peers.ostraca_setup DATA_DIR PORT``.
"""

# Imports inside functions are deliberate: each measurement process loads only the system it
# measures (peer libraries, torch, Ostraca), and the orchestrator runs without them.
# ruff: noqa: PLC0415

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.peers.common import DATA_DIR, free_port, wait_http

NAMESPACE = "bench"
STATE_DIR = DATA_DIR / "ostraca"


def available() -> str | None:
    """None when Ostraca's publish, streaming and server modules import; else why not."""
    try:
        import ostraca.client.publishing
        import ostraca.client.stream
        import ostraca.client.torch
        import ostraca.server.app  # noqa: F401
    except Exception as e:  # a module still being written counts as "not yet available"
        return f"{type(e).__name__}: {e}"
    return None


class Registry:
    """The Ostraca registry on a free loopback port, data under ``STATE_DIR/registry``."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self.data_dir = STATE_DIR / "registry"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = STATE_DIR / "registry.log"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs" / "sha256"

    def __enter__(self) -> Registry:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self._log, "ab")
        self._proc = subprocess.Popen(
            [self.python, "-m", "bench.peers.ostraca_setup", str(self.data_dir), str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            wait_http(self.url + "/healthz", timeout=60)
        except OSError:
            self.__exit__(None, None, None)
            raise RuntimeError(f"the registry did not start; see {self._log}") from None
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


def _serve(data_dir: Path, port: int) -> None:
    import uvicorn

    from ostraca.server.app import create_app
    from ostraca.server.migrate import upgrade_to_head
    from ostraca.server.settings import Settings

    settings = Settings(data_dir=data_dir)
    upgrade_to_head(settings.database_url)
    uvicorn.run(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        ws="none",
        timeout_keep_alive=30,
    )


def _identity(home: Path, registry: str, name: str, kind: str) -> Any:
    from ostraca.client.api import RegistryClient
    from ostraca.client.config import load_config
    from ostraca.client.keystore import save_signing_key
    from ostraca.protocol_spec import SigningKey

    fresh = not (home / "identity.pem").exists()
    if fresh:
        key = SigningKey.generate()
        save_signing_key(
            key, home / "identity.pem", profile={"name": name, "kind": kind, "affiliation": "bench"}
        )
    client = RegistryClient(load_config(home=home, registry=registry))
    if fresh:
        client.register(name, kind, "bench")
    client.login()
    return client


def publish_corpus(
    registry: Registry, corpus_root: Path, name: str, shard_bytes: int
) -> dict[str, Any]:
    """Publish ``corpus_root/parquet`` as ``bench/<name>`` (once), grant the researcher access.

    Returns the dataset name, the researcher's home, and the shard blob files in manifest order.
    """
    from ostraca.client.publishing import publish
    from ostraca.protocol_spec import utc_now

    marker = STATE_DIR / f"published-{name}.json"
    if marker.exists():
        return dict(json.loads(marker.read_text()))
    pub = _identity(STATE_DIR / "home-publisher", registry.url, "bench-publisher", "institution")
    res = _identity(STATE_DIR / "home-researcher", registry.url, "bench-researcher", "researcher")
    try:
        if not (STATE_DIR / "namespace").exists():
            pub.create_namespace(NAMESPACE)
            (STATE_DIR / "namespace").write_text(NAMESPACE)
        dataset = f"{NAMESPACE}/{name}"
        t0 = time.perf_counter()
        result = publish(
            pub,
            sorted((corpus_root / "parquet").glob("*.parquet")),
            dataset=dataset,
            license="CC-BY-4.0",
            terms="Benchmark data: synthetic, no restrictions.",
            description="synthetic benchmark corpus",
            shard_bytes=shard_bytes,
            compression="none",
            progress=False,
            encrypt=False,  # the peers store plaintext: like for like
        )
        publish_s = time.perf_counter() - t0
        request = res.request_access(dataset, purpose="benchmark")
        pub.approve(request.request_id, expires=utc_now() + timedelta(days=30))
        manifest = res.get_manifest_envelope(dataset, result.version)
        from ostraca.protocol_spec import verify_manifest

        verified = verify_manifest(
            manifest, publisher_keys=res.namespace_keys(NAMESPACE), now=utc_now(), dataset=dataset
        )
        shards = [s.sha256 for s in verified.statement.shards]
        info = {
            "dataset": dataset,
            "version": result.version,
            "home": str(STATE_DIR / "home-researcher"),
            "shards": shards,
            "shard_bytes": [s.bytes for s in verified.statement.shards],
            "publish_s": publish_s,
            "compression": "none",
        }
    finally:
        pub.close()
        res.close()
    marker.write_text(json.dumps(info, indent=1))
    return info


def reset() -> None:
    shutil.rmtree(STATE_DIR, ignore_errors=True)


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), int(sys.argv[2]))
