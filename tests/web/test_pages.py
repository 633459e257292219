"""The server-rendered pages: the catalog and the dataset card, read over real HTTP."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from html.parser import HTMLParser

import httpx

from ostraca.client.publishing import PublishResult
from ostraca.protocol_spec import DatasetManifest, parse_canonical
from ostraca.server.web import CSP

from ..client.client_helpers import Identity, sample_table


class _JsonLd(HTMLParser):
    """Collects the text of ``<script type="application/ld+json">`` elements."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._inside = tag == "script" and ("type", "application/ld+json") in attrs
        if self._inside:
            self.blocks.append("")

    def handle_endtag(self, tag: str) -> None:
        self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.blocks[-1] += data


def _names(html: str) -> list[str]:
    return re.findall(r'<h2><a href="/datasets/([^"]+)">', html)


def test_catalog_search_filters_and_pages(
    registry: str, publisher: Identity, publish_table: Callable[..., PublishResult]
) -> None:
    publisher.client.create_namespace("beta")
    publish_table(dataset="acme/books", description="Public-domain books")
    publish_table(dataset="acme/news", license="CC0-1.0", description="Newswire")
    publish_table(dataset="beta/poems", license="MIT", description="Poems, some books")
    page = httpx.get(f"{registry}/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    assert _names(page.text) == ["acme/books", "acme/news", "beta/poems"]
    assert _names(httpx.get(f"{registry}/?q=BOOKS").text) == ["acme/books", "beta/poems"]
    assert _names(httpx.get(f"{registry}/?license=CC0-1.0").text) == ["acme/news"]
    assert _names(httpx.get(f"{registry}/?namespace=beta").text) == ["beta/poems"]
    assert _names(httpx.get(f"{registry}/?q=books&namespace=acme").text) == ["acme/books"]
    assert _names(httpx.get(f"{registry}/?q=100%25").text) == []
    second = httpx.get(f"{registry}/?per_page=2&page=2").text
    assert _names(second) == ["beta/poems"]
    assert "page 2 of 2" in second
    assert 'rel="prev" href="?q=&amp;license=&amp;namespace=&amp;per_page=2&amp;page=1"' in second
    assert '<option value="MIT">MIT (1)</option>' in page.text
    assert '<option value="acme">acme (2)</option>' in page.text


def test_card_shows_what_the_manifest_says(
    registry: str, publisher: Identity, publish_table: Callable[..., PublishResult]
) -> None:
    publish_table(sample_table(200, seed=0))
    latest = publish_table(sample_table(300, seed=1))
    page = httpx.get(f"{registry}/datasets/acme/books")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    html = page.text
    assert '<a href="https://spdx.org/licenses/CC-BY-4.0.html" rel="license">CC-BY-4.0</a>' in html
    assert "Research use only. Do not redistribute. Cite the corpus." in html
    for column, arrow_type in [("id", "int64"), ("text", "string"), ("score", "double")]:
        assert f"<tr><td><code>{column}</code></td><td><code>{arrow_type}</code></td></tr>" in html
    manifest = DatasetManifest.from_json_obj(
        parse_canonical(publisher.client.get_manifest_envelope("acme/books").payload)
    )
    assert f"sha256:{latest.digest}" in html
    assert html.count(f'<code class="digest">{publisher.keyid}</code> (active)') == 2
    for shard in manifest.shards:
        assert shard.sha256 in html
    assert f"{len(manifest.shards)} shard" in html
    assert "ostraca pull acme/books@2 ./books" in html
    assert 'open_dataset("acme/books")' in html


# mlcroissant runs in a child process: its absl logging binds the stderr it finds at import,
# which under pytest is a capture stream that is closed later (the interpreter then dies).
_VALIDATE = """
import json, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)
import mlcroissant as mlc
issues = mlc.Dataset(jsonld=json.load(sys.stdin)).metadata.ctx.issues
found = {"errors": issues.errors, "warnings": issues.warnings}
print(json.dumps({kind: sorted(map(str, items)) for kind, items in found.items()}))
"""


def test_card_embeds_valid_croissant(registry: str, books: PublishResult) -> None:
    parser = _JsonLd()
    parser.feed(httpx.get(f"{registry}/datasets/acme/books").text)
    [block] = parser.blocks
    jsonld = json.loads(block)
    checked = subprocess.run(
        [sys.executable, "-c", _VALIDATE], input=block, capture_output=True, text=True, check=True
    )
    assert json.loads(checked.stdout.strip().splitlines()[-1]) == {"errors": [], "warnings": []}
    assert jsonld["license"] == "https://spdx.org/licenses/CC-BY-4.0.html"
    assert jsonld["identifier"] == f"sha256:{books.digest}"
    files = [d for d in jsonld["distribution"] if d["@type"] == "cr:FileObject"]
    assert [f["sha256"] for f in files] == [s.sha256 for s in books.shards]
    fields = jsonld["recordSet"][0]["field"]
    assert [(f["name"], f["dataType"]) for f in fields] == [
        ("id", "sc:Integer"),
        ("text", "sc:Text"),
        ("score", "sc:Float"),
    ]


def test_unknown_dataset_is_a_page_that_says_so(registry: str) -> None:
    for path in ("/datasets/acme/nothing", "/datasets/acme/..x"):
        page = httpx.get(f"{registry}{path}")
        assert page.status_code == 404
        assert "It may have been deleted." in page.text
