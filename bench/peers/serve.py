"""Servers on 127.0.0.1 for the benchmark: a neutral nginx (every peer, plus Ostraca's blob files)
and a bare FastAPI app (the load generator's baseline). Each runs as a non-daemon child process
with its own config in a temp dir, on a free port, and is stopped by its context manager."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

from bench.peers.common import TOKEN, free_port, wait_http

NGINX_CONF = """\
{user}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ application/octet-stream bin; application/json json; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        if ($http_authorization != "Bearer {token}") {{ return 401; }}
        location / {{ root {root}; }}
{extra}
    }}
}}
"""


class Nginx:
    """``nginx -g 'daemon off;'`` serving ``root`` (and Ostraca's blob files, if ``blob_dir``)."""

    def __init__(self, root: Path, blob_dir: Path | None = None) -> None:
        self.root = root
        self.blob_dir = blob_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._tmp = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Nginx:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        # Ostraca's blob URLs (GET /v1/datasets/<ns>/<name>/blobs/sha256:<hex>) onto the registry's
        # blob files.
        extra = ""
        if self.blob_dir is not None:
            extra = (
                '        location ~ "^/v1/datasets/[^/]+/[^/]+/blobs/sha256:([0-9a-f]{64})$" '
                f"{{ alias {self.blob_dir}/$1; }}"
            )
        conf = NGINX_CONF.format(
            user="user root;" if os.geteuid() == 0 else "",
            tmp=self._tmp,
            port=self.port,
            token=TOKEN,
            root=self.root,
            extra=extra,
        )
        (self._tmp / "nginx.conf").write_text(conf)
        self._proc = subprocess.Popen(
            [nginx, "-p", str(self._tmp), "-c", str(self._tmp / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_http(self.base + "/", timeout=15)
        except OSError:
            self._proc.kill()
            err = self._proc.stderr.read().decode() if self._proc.stderr else ""
            raise RuntimeError(f"nginx did not start: {err}") from None
        return self

    def version(self) -> str:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        out = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
        return (out.stderr or out.stdout).strip().split("/")[-1]

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._tmp, ignore_errors=True)


BARE_APP = """
from fastapi import FastAPI, Request, Response
app = FastAPI()
BLOB = bytes(range(256)) * 256 * 4  # 256 KiB
@app.api_route("/blob", methods=["GET", "HEAD"])
async def blob(request: Request) -> Response:
    if request.headers.get("authorization") != "Bearer {token}":
        return Response(status_code=401)
    rng = request.headers.get("range")
    headers = {{"etag": "x", "accept-ranges": "bytes"}}
    if rng and request.method == "GET":
        lo, hi = (int(x) for x in rng.removeprefix("bytes=").split("-"))
        body = BLOB[lo : hi + 1]
        headers["content-range"] = f"bytes {{lo}}-{{hi}}/{{len(BLOB)}}"
        return Response(body, status_code=206, headers=headers)
    headers["content-length"] = str(len(BLOB))
    return Response(b"" if request.method == "HEAD" else BLOB, headers=headers)
"""


class BareFastAPI:
    """A bare FastAPI endpoint (GET/HEAD/Range over a 256 KiB blob, same bearer check) on uvicorn
    with the same server options as the registry: what the registry's own logic adds over it."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._tmp = Path(tempfile.mkdtemp(prefix="bench-bare-"))
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BareFastAPI:
        (self._tmp / "bare_app.py").write_text(BARE_APP.format(token=TOKEN))
        self._proc = subprocess.Popen(
            [
                self.python,
                "-m",
                "uvicorn",
                "bare_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=self._tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_http(self.base + "/blob", timeout=30)
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._tmp, ignore_errors=True)
