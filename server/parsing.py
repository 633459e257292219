"""Numbers from untrusted text: ASCII digits only.

``str.isdigit()`` accepts ``²`` and ``٣`` and ``int()`` accepts ``٣`` but not ``²``, so the two
together turned a header of ``\\xb2`` into a 500. Here a number is ``[0-9]{1,max_digits}``.
"""

from __future__ import annotations

import re

from ostraca.protocol_spec.errors import MalformedError

_DIGITS = re.compile(r"[0-9]{1,18}", re.ASCII)


def ascii_uint(text: str, *, max_digits: int = 18) -> int | None:
    """The value of ``text`` if it is 1 to ``max_digits`` ASCII digits, else ``None``."""
    if len(text) > max_digits or _DIGITS.fullmatch(text) is None:
        return None
    return int(text)


def require_uint(text: str, what: str, *, max_digits: int = 18) -> int:
    """:func:`ascii_uint` or 422 ``malformed`` naming ``what``."""
    value = ascii_uint(text, max_digits=max_digits)
    if value is None:
        raise MalformedError(f"{what} must be a non-negative integer of ASCII digits")
    return value
