"""Fixtures of the web page tests: a published dataset, and a real Chromium (Debian's).

The browser is launched from ``/usr/bin/chromium``; if it is missing, the tests fail (they
never skip): install it with ``apt-get install -y chromium``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from ostraca.client.publishing import PublishResult

from .browser_helpers import SCREENSHOTS

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# make test runs one worker per core: a page shares its cores with another test, and signing in
# (WebCrypto import, the challenge, deriving the X-Wing key in JavaScript) once took over the
# 5 s Playwright waits for an assertion by default. Assertions wait up to 20 s for a condition;
# none of them changes.
expect.set_options(timeout=20_000)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def books(publish_table: Callable[..., PublishResult]) -> PublishResult:
    """``acme/books`` version 1, published by the ``publisher`` fixture."""
    return publish_table()


@pytest.fixture
def screens(tmp_path: Path) -> Path:
    """Where screenshots go: ``$OSTRACA_WEB_SCREENSHOTS`` (``docs/screenshots`` refreshes the
    README's), else a folder of the test."""
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path / "screens"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
