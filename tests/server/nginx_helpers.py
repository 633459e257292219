"""Debian's nginx with the server block of ``deploy/nginx/ostraca.conf``, on a free port in
front of a registry: only the block's example port, upstream and blob path are replaced, and a
minimal main configuration keeps every file nginx writes in one folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .delivery_helpers import wait_until_up

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_config(folder: Path, *, listen: int, upstream: int, blobs: Path) -> Path:
    """Write ``folder/nginx.conf`` (including ``folder/ostraca.conf``, the deploy/ block)."""
    block = (DEPLOY / "nginx" / "ostraca.conf").read_text()
    for example, here in (
        ("listen 8080;", f"listen 127.0.0.1:{listen};"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};"),
        ("/var/lib/ostraca/blobs/", f"{blobs}/"),
    ):
        if example not in block:
            raise RuntimeError(f"deploy/nginx/ostraca.conf no longer has {example!r}")
        block = block.replace(example, here)
    (folder / "ostraca.conf").write_text(block)
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "\n".join(f"  {kind}_temp_path {folder}/{kind};" for kind in kinds)
    # As root, the workers would otherwise run as nobody, who cannot read a test's tmp folder.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    main = folder / "nginx.conf"
    main.write_text(
        f"{user}worker_processes 1;\ndaemon off;\nerror_log {folder}/error.log warn;\n"
        f"pid {folder}/nginx.pid;\nevents {{ worker_connections 512; }}\n"
        f"http {{\n  access_log off;\n{temp}\n  include {folder}/ostraca.conf;\n}}\n"
    )
    return main


@contextmanager
def running_nginx(folder: Path, *, listen: int, upstream: int, blobs: Path) -> Iterator[str]:
    """nginx in front of the registry on ``upstream`` until the block ends; yields its URL."""
    if not Path(NGINX).exists():
        raise RuntimeError("nginx is not installed: apt-get install -y nginx")
    folder.mkdir(parents=True, exist_ok=True)
    conf = nginx_config(folder, listen=listen, upstream=upstream, blobs=blobs)
    log = folder / "error.log"
    proc = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(conf)])
    url = f"http://127.0.0.1:{listen}"
    try:
        wait_until_up(f"{url}/healthz", proc, "nginx", log)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
