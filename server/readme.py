"""A dataset card's README (markdown, written by its publisher) as HTML for the card page.

A small subset, rendered safely: every character of the source is HTML-escaped first, and only
then do these constructs become tags: ATX headings (``#``..``######``, shown two levels down,
below the page's own headings), fenced code blocks, ``-``/``*`` bullet lists, paragraphs,
inline code, ``**strong**``, ``*emphasis*`` and ``[text](https://…)`` links (``http`` and
``https`` only, ``rel="nofollow noopener noreferrer"``). Raw HTML in the README stays text, so a
``<script>`` in it is shown, never run (and the page's CSP allows no inline script anyway).
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_HEADING = re.compile(r"(#{1,6})[ \t]+(.*?)[ \t#]*")
_ITEM = re.compile(r"[ \t]*[-*][ \t]+(.*)")
_FENCE = "```"
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_EM = re.compile(r"\*(?=\S)([^*]+?)(?<=\S)\*")
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^\s()]+)\)")


def _inline(text: str) -> str:
    """Escape ``text``; then code spans, strong, emphasis and links (none inside code)."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick is text
        parts[-2:] = [parts[-2] + "`" + parts[-1]]
    out = []
    for i, part in enumerate(parts):
        safe = str(escape(part))
        if i % 2:
            out.append(f"<code>{safe}</code>")
            continue
        safe = _STRONG.sub(r"<strong>\1</strong>", safe)
        safe = _EM.sub(r"<em>\1</em>", safe)
        safe = _LINK.sub(r'<a href="\2" rel="nofollow noopener noreferrer">\1</a>', safe)
        out.append(safe)
    return "".join(out)


def _is_block_start(line: str) -> bool:
    return line.startswith(_FENCE) or bool(_HEADING.fullmatch(line) or _ITEM.fullmatch(line))


def render_readme(source: str) -> Markup:
    """``source`` (markdown) as safe HTML (see the module docstring for the subset)."""
    lines = source.splitlines()
    blocks: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(_FENCE):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(_FENCE)), None)
            code = lines[i + 1 : end]
            blocks.append(f"<pre><code>{escape(chr(10).join(code))}</code></pre>")
            i = len(lines) if end is None else end + 1
        elif heading := _HEADING.fullmatch(line):
            level = min(len(heading[1]) + 2, 6)
            blocks.append(f"<h{level}>{_inline(heading[2])}</h{level}>")
            i += 1
        elif _ITEM.fullmatch(line):
            items = []
            while i < len(lines) and (item := _ITEM.fullmatch(lines[i])):
                items.append(f"<li>{_inline(item[1])}</li>")
                i += 1
            blocks.append("<ul>" + "".join(items) + "</ul>")
        elif not line.strip():
            i += 1
        else:
            start = i
            while i < len(lines) and lines[i].strip() and not _is_block_start(lines[i]):
                i += 1
            text = " ".join(part.strip() for part in lines[start:i])
            blocks.append(f"<p>{_inline(text)}</p>")
    return Markup("\n".join(blocks))  # noqa: S704 - every piece above is escaped
