"""A person in front of Chromium: their own browser context (storage, IndexedDB), every
request the pages make recorded, and the few gestures the tests repeat."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from playwright.sync_api import Browser, Locator, Request, ViewportSize, expect

SCREENSHOTS = os.environ.get("OSTRACA_WEB_SCREENSHOTS", "")
"""Folder the screenshots are written to (see the ``screens`` fixture)."""


class Visitor:
    """One browser context at ``base`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, browser: Browser, base: str, *, phone: bool = False) -> None:
        size: ViewportSize = (
            {"width": 390, "height": 844} if phone else {"width": 1200, "height": 900}
        )
        self.base = base
        self.context = browser.new_context(
            viewport=size, is_mobile=phone, has_touch=phone, device_scale_factor=1
        )
        self.context.set_default_timeout(10_000)
        self.requested: list[str] = []
        self.sent: list[str] = []
        """The body of every request the pages sent."""
        self.context.on("request", self._record)
        self.page = self.context.new_page()

    def _record(self, request: Request) -> None:
        self.requested.append(request.url)
        if request.post_data is not None:
            self.sent.append(request.post_data)

    def __enter__(self) -> Visitor:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.context.close()

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)

    @property
    def message(self) -> Locator:
        return self.page.locator("#message")

    def sign_in(self, key_file: Path, *, passphrase: str | None = None) -> None:
        self.goto("/signin")
        self.page.set_input_files("#keyfile", str(key_file))
        if passphrase is not None:
            self.page.get_by_role("button", name="Sign in").click()
            expect(self.message).to_contain_text("protected by a passphrase")
            self.page.get_by_label("Passphrase of the key file").fill(passphrase)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.message).to_contain_text("Signed in as")

    def token_or_none(self) -> str | None:
        """The bearer token the pages keep in IndexedDB, if signed in."""
        token: str | None = self.page.evaluate(
            "async () => (await (await import('/static/ostraca.js')).getSession())?.token ?? null"
        )
        return token

    def token(self) -> str:
        token = self.token_or_none()
        assert token is not None, "not signed in"
        return token

    def outside_requests(self) -> list[str]:
        """Every URL the pages asked for that is not on the registry."""
        return [u for u in self.requested if not u.startswith(self.base + "/")]

    def screenshot(self, folder: Path, name: str) -> Path:
        path = folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path
