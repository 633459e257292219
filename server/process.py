"""Run a registry in a child process on a free loopback port (the demo and the GPU check do)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from ostraca.protocol_spec.errors import UnavailableError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def registry_process(data_dir: Path, *, start_timeout: float = 60.0) -> Iterator[str]:
    """``python -m ostraca.server run`` with its data (SQLite + blobs) in ``data_dir``.

    Yields the base URL once ``/healthz`` answers; stops the process afterwards. The child gets
    this environment without ``OSTRACA_*`` settings (a user's database URL must not leak into
    it); its output goes to ``data_dir/server.log``, whose tail is in the error if it fails.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSTRACA_")}
    env["OSTRACA_DATA_DIR"] = str(data_dir)
    log_path = data_dir / "server.log"
    cmd = [sys.executable, "-m", "ostraca.server", "run", "--host", "127.0.0.1"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if proc.poll() is not None:
                    log.flush()
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise UnavailableError(
                        f"the registry exited with status {proc.returncode}:\n{tail}"
                    )
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise UnavailableError(
                        f"the registry did not start within {start_timeout:.0f} s",
                        hint=f"see {log_path}",
                    )
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
