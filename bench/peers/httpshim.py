"""The smallest HTTP downloaders MosaicML Streaming and LitData accept (neither has a plain-HTTP
backend): a whole-file GET with the bearer header, streamed into the cache file through a 1 MiB
buffer, published atomically. Rows that use these are labelled "with shim"."""

# Imports inside functions are deliberate: each measurement process loads only the system it
# measures (peer libraries, torch, Ostraca), and the orchestrator runs without them.
# ruff: noqa: PLC0415

from __future__ import annotations

import os
import shutil
import urllib.request
from typing import Any

from bench.peers.common import TOKEN


def http_get_to(url: str, local: str, timeout: float = 120.0) -> None:
    os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
    tmp = f"{local}.tmp.{os.getpid()}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=timeout) as r, open(tmp, "wb") as f:
        shutil.copyfileobj(r, f, 1 << 20)
    os.replace(tmp, local)


def install_streaming_shim() -> None:
    from streaming.base.storage import download as sd

    class HTTPDownloader(sd.CloudDownloader):  # type: ignore[misc]
        @staticmethod
        def _client_identifier() -> str:
            return "http"

        def clean_up(self) -> None:
            pass

        def _download_file_impl(self, remote: str, local: str, timeout: float) -> None:
            http_get_to(remote, local, timeout)

    sd.DOWNLOADER_MAPPINGS["http"] = HTTPDownloader


def install_litdata_shim() -> None:
    from litdata.streaming import downloader as ld

    class HTTPDownloader(ld.Downloader):  # type: ignore[misc]
        def download_file(self, remote_filepath: str, local_filepath: str) -> None:
            if os.path.exists(local_filepath):
                return
            http_get_to(remote_filepath, local_filepath)
            notify = getattr(self, "_notify_published", None)
            if notify is not None:
                notify(local_filepath)

        async def adownload_file(self, remote_filepath: str, local_filepath: str) -> None:
            import asyncio

            await asyncio.to_thread(self.download_file, remote_filepath, local_filepath)

        def download_fileobj(self, remote_filepath: str, file_obj: Any) -> None:
            req = urllib.request.Request(
                remote_filepath, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            with urllib.request.urlopen(req) as r:
                shutil.copyfileobj(r, file_obj, 1 << 20)

    ld.register_downloader("http://", HTTPDownloader, overwrite=True)
