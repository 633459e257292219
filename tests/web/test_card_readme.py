"""The card page shows the signed card's README, rendered safely: a hostile README's markup is
text, in the HTML over real HTTP and in a real Chromium (no script runs, no dialog opens)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from playwright.sync_api import Browser, Dialog

from ostraca.client.cards import deprecate_version, publish_card
from ostraca.client.publishing import PublishResult
from ostraca.server.readme import render_readme
from ostraca.server.web import CSP

from ..client.client_helpers import Identity, sample_table
from .browser_helpers import Visitor

HOSTILE = """# Old books

Paragraphs of *public-domain* books, with `code` and a [source](https://example.org/?a=1&b=2).

<script>alert("readme")</script>
<img src=x onerror="alert('img')">

- one
- [two](javascript:alert('link'))

```
<script>alert("fenced")</script>
```
"""


def test_the_renderer_escapes_everything_it_does_not_render() -> None:
    html = str(render_readme(HOSTILE))
    assert "<script" not in html
    assert "<img" not in html
    assert html.count("<a ") == 1  # the https link; the javascript: one stays text
    assert "<li>[two](javascript:alert(&#39;link&#39;))</li>" in html
    assert '<a href="https://example.org/?a=1&amp;b=2" rel="nofollow noopener noreferrer">' in html
    assert "<h3>Old books</h3>" in html
    assert "<em>public-domain</em>" in html
    assert "<li>one</li>" in html
    assert "<pre><code>&lt;script&gt;alert(&#34;fenced&#34;)&lt;/script&gt;</code></pre>" in html
    assert "&lt;script&gt;alert(&#34;readme&#34;)&lt;/script&gt;" in html


def test_the_card_page_shows_the_readme_safely_and_marks_deprecated_versions(
    registry: str,
    publisher: Identity,
    publish_table: Callable[..., PublishResult],
    browser: Browser,
) -> None:
    publish_table(sample_table(200, seed=0))
    publish_table(sample_table(300, seed=1))
    publish_card(publisher.client, "acme/books", description="Books, described", readme=HOSTILE)
    deprecate_version(publisher.client, "acme/books", 2, reason="rows mislabelled")
    page = httpx.get(f"{registry}/datasets/acme/books")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    html = page.text
    assert '<p class="lead">Books, described</p>' in html
    assert "<h3>Old books</h3>" in html
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;readme&#34;)&lt;/script&gt;" in html
    assert '<strong class="deprecated">deprecated</strong>: rows mislabelled' in html
    assert "<dt>Latest version</dt><dd>1 (newer versions are deprecated)</dd>" in html
    assert "ostraca pull acme/books@1 ./books" in html
    dialogs: list[str] = []
    with Visitor(browser, registry) as visitor:

        def record(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        visitor.page.on("dialog", record)
        visitor.goto("/datasets/acme/books")
        readme = visitor.page.locator("#readme")
        assert 'alert("readme")' in readme.inner_text()
        assert readme.locator("script, img").count() == 0
        link = visitor.page.locator("#readme a")
        assert link.count() == 1
        assert link.get_attribute("rel") == "nofollow noopener noreferrer"
        assert dialogs == []
        assert visitor.outside_requests() == []
