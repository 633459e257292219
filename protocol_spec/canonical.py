"""Canonical JSON (RFC 8785) and its strict inverse.

One function makes the bytes that are signed (:func:`canonical_bytes`); the verifier parses with
:func:`parse_canonical`, which refuses anything another encoder could have produced differently:
duplicate keys, floats, whitespace, key order, escapes. A payload is accepted only if
re-canonicalizing what was parsed gives back exactly the bytes that were signed.

Speed. The ``rfc8785`` package is pure Python (about 2 s for a 100,000-shard manifest). Signed
payloads use a restricted JSON subset — objects with string keys, arrays, strings, integers in
``[-(2**53-1), 2**53-1]``, booleans, null; never floats — and on that subset RFC 8785 coincides
with the standard library's C encoder (``sort_keys=True``, no whitespace, no ASCII escaping)
except for one thing: RFC 8785 orders object keys by UTF-16 code units, the C encoder by code
points. The two orders differ only between a character above U+FFFF (a surrogate pair in
UTF-16) and one in U+E000..U+FFFF, so whenever the bytes contain any 4-byte UTF-8 sequence we use
``rfc8785`` itself. Every other input outside the subset (floats, out-of-range integers, lone
surrogates, tuples, non-string keys, foreign types) also falls back to ``rfc8785``, so its exact
result (or error) is kept. ``tests/protocol_spec/test_canonical_equivalence.py`` checks the
equivalence with hypothesis against ``rfc8785.dumps``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

from .errors import MalformedError, NonCanonicalError

MAX_PAYLOAD_BYTES = 512 * 1024 * 1024
"""Upper bound on a signed payload (a 1,000,000-shard manifest is about 250 MB)."""

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer magnitude allowed in a signed payload (RFC 8785 / I-JSON)."""

_FOUR_BYTE_LEADS = (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")


def _has_astral(data: bytes) -> bool:
    """Whether UTF-8 ``data`` holds a character above U+FFFF (its lead byte is F0..F4)."""
    return not data.isascii() and any(lead in data for lead in _FOUR_BYTE_LEADS)


def _rfc8785(obj: Any) -> bytes:
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise MalformedError(f"value cannot be canonicalized: {exc}") from exc


def _stdlib_canonical(obj: Any) -> bytes:
    """The C encoder's form; equal to RFC 8785 on the subset described in the module docstring."""
    text = json.dumps(
        obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    )
    return text.encode("utf-8")


class _FallbackError(Exception):
    """Raised inside the fast path's checks: use ``rfc8785`` for this value."""


def _fallback_float(text: str) -> Any:
    raise _FallbackError(text)


def _fallback_int(text: str) -> int:
    value = int(text)
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise _FallbackError(text)
    return value


def _fast_canonical(obj: Any) -> bytes | None:
    """The C encoder's bytes if ``obj`` lies in the subset where they equal RFC 8785's, else None.

    The fast form is used only if it reads back as exactly ``obj`` with no float and no
    out-of-range integer, and holds no astral character (the one case where key orders differ).
    """
    try:
        fast = _stdlib_canonical(obj)
        if _has_astral(fast):
            return None
        back = json.loads(fast, parse_float=_fallback_float, parse_int=_fallback_int)
    except (_FallbackError, TypeError, ValueError, RecursionError):
        return None
    return fast if back == obj else None


def canonical_bytes(obj: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON value (ints, strings, bools, null, lists, dicts).

    Raises :class:`MalformedError` for values RFC 8785 cannot represent (for example integers
    beyond ±(2**53-1), lone surrogates, non-string keys, NaN).
    """
    fast = _fast_canonical(obj)
    return fast if fast is not None else _rfc8785(obj)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise NonCanonicalError(f"duplicate key {key!r} in JSON object")
            seen.add(key)
    return out


def _no_float(text: str) -> Any:
    raise NonCanonicalError(f"floating-point number {text!r} is not allowed in signed payloads")


def _no_constant(text: str) -> Any:
    raise NonCanonicalError(f"{text} is not JSON")


def _checked_int(text: str) -> int:
    value = int(text)
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise MalformedError(f"integer {text[:32]} is outside ±(2**53-1)")
    return value


def _loads(data: bytes, *, check_ints: bool, check_duplicates: bool = True) -> Any:
    if len(data) > MAX_PAYLOAD_BYTES:
        raise MalformedError(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError(f"payload is not UTF-8: {exc}") from exc
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates if check_duplicates else None,
            parse_float=_no_float,
            parse_int=_checked_int if check_ints else None,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as exc:
        raise MalformedError(f"payload is not JSON: {exc.msg} at offset {exc.pos}") from exc
    except RecursionError as exc:
        raise MalformedError("payload nests too deeply") from exc
    except ValueError as exc:  # an integer literal beyond Python's digit limit
        raise MalformedError(f"payload is not usable JSON: {exc}") from exc


def parse_strict(data: bytes) -> Any:
    """Parse JSON refusing duplicate keys, floats, NaN and invalid UTF-8."""
    return _loads(data, check_ints=False)


def parse_canonical(data: bytes) -> dict[str, Any]:
    """Parse a signed payload: a JSON object whose bytes are exactly its RFC 8785 form.

    Errors: :class:`MalformedError` (not UTF-8, not JSON, not an object, an integer beyond
    ±(2**53-1), a lone surrogate), :class:`NonCanonicalError` (duplicate key, float, or bytes
    that differ from the canonical form in any way).
    """
    # Duplicate keys need no check of their own here: a parsed object keeps one member per key,
    # so its canonical form is shorter than bytes that repeat a key. They are named in the error.
    value = _loads(data, check_ints=True, check_duplicates=False)
    if not isinstance(value, dict):
        raise MalformedError("payload must be a JSON object")
    # ``value`` now holds only dicts with string keys, lists, strs, bools, None and in-range
    # ints, which is the subset where the fast encoder is exact unless astral characters occur.
    if _has_astral(data):
        expected = _rfc8785(value)
    else:
        try:
            expected = _stdlib_canonical(value)
        except (ValueError, RecursionError):  # a lone surrogate cannot be UTF-8 encoded
            expected = _rfc8785(value)
    if expected != data:
        _loads(data, check_ints=True)  # raises NonCanonicalError naming a duplicate key, if any
        raise NonCanonicalError("payload bytes are not RFC 8785 canonical JSON")
    return value
