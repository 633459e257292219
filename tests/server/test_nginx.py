"""Local disk behind nginx (``OSTRACA_BLOB_DELIVERY=accel``): Debian's nginx runs the server
block of ``deploy/nginx/ostraca.conf`` (only its example port, upstream and blob path replaced)
in front of a real registry; the registry authorizes and audits, nginx sends the file."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from ostraca.server.settings import Settings

from ..registry_helpers import Registry
from ..security.security_helpers import serve
from .delivery_helpers import dataset_fetcher, fetch_verified, publish_shards
from .nginx_helpers import running_nginx
from .server_helpers import (
    blob_url,
    new_identity,
)
from .storage_fixtures import free_port

MIB = 1024 * 1024
CHUNK = 256 * 1024


def test_nginx_sends_what_the_registry_authorized_and_audited(
    settings: Settings, tmp_path: Path
) -> None:
    blobs = tmp_path / "blobs"
    accel = Settings(
        data_dir=settings.data_dir,
        database_url=settings.database_url,
        storage_url=f"file://{blobs}",
        blob_delivery="accel",
        max_blob_bytes=8 * MIB,
    )
    with (
        serve(accel) as registry,
        running_nginx(
            tmp_path / "nginx", listen=free_port(), upstream=_port(registry), blobs=blobs
        ) as front,
    ):
        with httpx.Client(base_url=front, timeout=30) as http:
            owner = new_identity(http, "institution", "Acme Institute")
            reader = new_identity(http, "researcher", "Ada")
            stranger = new_identity(http, "researcher", "Eve")
            shards = [os.urandom(3 * MIB)]  # uploads pass through nginx too
            built = publish_shards(http, owner, reader, shards, chunk_bytes=CHUNK)
            shard = built.manifest.shards[0].sha256
            data = built.blobs[shard]
            fetcher = dataset_fetcher(front, reader)
            fetch_verified(fetcher, built, 0, tmp_path / "copy")
            fetcher.close()
            assert (tmp_path / "copy").read_bytes() == data
            url = blob_url("acme/books", shard)
            r = http.get(url, headers={**reader.headers, "Range": "bytes=1000-1999"})
            assert (r.status_code, r.content) == (206, data[1000:2000])
            assert r.headers["etag"] == f'"sha256:{shard}"'
            assert r.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
            assert "x-accel-redirect" not in r.headers
            refused = http.get(url, headers=stranger.headers)
            assert (refused.status_code, refused.json()["code"]) == (403, "access_denied")
            assert http.get(f"/_ostraca_blobs/{shard}").status_code == 404  # internal
            log = http.get("/v1/datasets/acme/books/audit", headers=owner.headers).json()
            reads = [e["detail"] for e in log["items"] if e["action"] == "read"]
            assert f"sha256:{shard} bytes 0-{len(data) - 1}/{len(data)}" in reads
            assert f"sha256:{shard} bytes 1000-1999/{len(data)}" in reads
        # The registry itself answers with the redirect header and no body.
        direct = httpx.get(registry.url + url, headers=reader.headers)
        assert direct.headers["x-accel-redirect"] == f"/_ostraca_blobs/{shard}"
        assert direct.content == b""


def _port(registry: Registry) -> int:
    return int(registry.url.rsplit(":", 1)[1])
