"""The page's canonical JSON and DSSE PAE (``static/sign.js``) against the protocol's own
(``protocol_spec/canonical.py``, ``envelope.pae``), on the inputs where encoders differ."""

from __future__ import annotations

import base64
import json
from typing import Any

from playwright.sync_api import Browser

from ostraca.protocol_spec import canonical_bytes, pae

from .browser_helpers import Visitor

TRICKY: list[Any] = [
    {"b": 1, "a": [True, False, None], "": {}},
    {"\U0001f600": 1, "\ufb33": 2, "\u20ac": 3, "e": 4, "é": 5},  # UTF-16 order, not code points
    {"s": 'quote " backslash \\ slash / tab \t nl \n cr \r bs \b ff \f nul \x00 us \x1f del \x7f'},
    {"s": "line sep \u2028 para sep \u2029 bom \ufeff astral \U0001f600 accents ñ 漢字"},
    {"n": [0, -1, 2**53 - 1, -(2**53 - 1), 10**15]},
    [[], [[]], {"x": [{"y": "z"}]}],
    "plain string",
]

IN_PAGE = """async ([values, type, payload]) => {
  const sign = await import('/static/sign.js');
  const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
  return [values.map(sign.canonical), sign.toBase64(sign.pae(type, bytes))];
}"""


def test_canonical_json_and_pae_match_the_protocol(browser: Browser, registry: str) -> None:
    payload = canonical_bytes({"dataset": "acme/books", "note": "é \U0001f600"})
    payload_type = "application/vnd.ostraca.access-request+json"
    with Visitor(browser, registry) as someone:
        someone.goto("/signin")
        texts, page_pae = someone.page.evaluate(
            IN_PAGE, [TRICKY, payload_type, base64.b64encode(payload).decode()]
        )
    for value, text in zip(TRICKY, texts, strict=True):
        assert text.encode("utf-8") == canonical_bytes(value), json.dumps(value)
    assert base64.b64decode(page_pae) == pae(payload_type, payload)
