"""Fixtures of the web page tests: a published dataset, and a real Chromium (Debian's).

The browser is launched from ``/usr/bin/chromium``; if it is missing, the tests fail (they
never skip): install it with ``apt-get install -y chromium``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from ostraca.client.publish import PublishResult

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


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
