"""Keyboard and screen-reader basics on every page, and a phone-sized screen."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from ostraca.client.publishing import PublishResult

from ..client.client_helpers import Identity
from .browser_helpers import Visitor

PAGES = ("/", "/?q=books", "/datasets/acme/books", "/signin", "/account", "/publisher")

UNLABELLED = """() => [...document.querySelectorAll("input, select, textarea, button")]
  .filter((el) => el.offsetParent !== null)
  .filter((el) => !(el.labels?.length || el.getAttribute("aria-label") || (el.tagName === "BUTTON"
    && el.textContent.trim())))
  .map((el) => el.outerHTML)"""

LANDMARKS = """() => ["header", "nav", "main", "footer"].map((t) => document.querySelectorAll(
  t === "nav" ? "header nav" : `body > ${t}`).length)"""


def _check_page(page: Page) -> None:
    assert page.evaluate("() => document.documentElement.lang") == "en"
    assert page.evaluate(LANDMARKS) == [1, 1, 1, 1]
    assert page.locator("h1").count() == 1
    assert page.evaluate(UNLABELLED) == []
    width = page.viewport_size["width"] if page.viewport_size else 0
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width


def test_every_page_is_labelled_has_landmarks_and_fits_a_phone(
    browser: Browser,
    registry: str,
    publisher: Identity,
    researcher: Identity,
    books: PublishResult,
    screens: Path,
) -> None:
    researcher.client.request_access("acme/books", purpose="A thesis")
    with Visitor(browser, registry, phone=True) as lab:
        lab.goto("/")
        viewport = lab.page.locator('meta[name="viewport"]').get_attribute("content")
        assert viewport == "width=device-width, initial-scale=1"
        lab.sign_in(publisher.home / "identity.pem")
        for path in PAGES:
            lab.goto(path)
            lab.page.wait_for_load_state("networkidle")
            _check_page(lab.page)
        expect(lab.page.locator("#inbox li")).to_have_count(1)
        lab.goto("/datasets/acme/books")
        lab.screenshot(screens, "card-phone")
        assert lab.outside_requests() == []


def test_keyboard_order_starts_with_the_skip_link(browser: Browser, registry: str) -> None:
    with Visitor(browser, registry) as someone:
        someone.goto("/")
        focused = []
        for _ in range(9):
            someone.page.keyboard.press("Tab")
            focused.append(
                someone.page.evaluate(
                    "() => document.activeElement.id || document.activeElement.textContent.trim()"
                )
            )
        assert focused == [
            "Skip to content",
            "Ostraca",
            "Datasets",
            "My requests",
            "Publisher",
            "signin-link",
            "q",
            "license",
            "namespace",
        ]
        someone.goto("/")
        someone.page.keyboard.press("Tab")
        someone.page.keyboard.press("Enter")
        expect(someone.page.locator("main")).to_be_focused()
