"""One HTTP byte range (RFC 9110 14.1.2) of a blob read."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .problems import RangeError

_RANGE_RE = re.compile(r"^bytes=([0-9]{0,18})-([0-9]{0,18})$")


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int
    partial: bool


def parse_range(header: str | None, size: int) -> ByteRange:
    """One ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range (RFC 9110 14.1.2)."""
    if header is None:
        return ByteRange(0, size - 1, partial=False)
    m = _RANGE_RE.match(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        raise RangeError(f"unsupported Range {header[:100]!r}: use one bytes=a-b", size=size)
    first, last = m.group(1), m.group(2)
    if not first:
        suffix = int(last)
        if suffix == 0:
            raise RangeError("an empty suffix range selects nothing", size=size)
        return ByteRange(max(0, size - suffix), size - 1, partial=True)
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if last and int(last) < start:
        raise RangeError(f"range end {last} is before its start {start}", size=size)
    if start >= size:
        raise RangeError(f"range starts at {start}, the blob has {size} bytes", size=size)
    return ByteRange(start, end, partial=True)
