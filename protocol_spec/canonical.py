"""Canonical JSON (RFC 8785) and its strict inverse.

One function makes the bytes that are signed (:func:`canonical_bytes`); the verifier parses with
:func:`parse_canonical`, which refuses anything another encoder could have produced differently:
duplicate keys, floats, whitespace, key order, escapes. A payload is accepted only if
re-canonicalizing what was parsed gives back exactly the bytes that were signed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

from .errors import MalformedError, NonCanonicalError

MAX_PAYLOAD_BYTES = 512 * 1024 * 1024
"""Upper bound on a signed payload (a 1,000,000-shard manifest is about 250 MB)."""


def canonical_bytes(obj: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON value (ints, strings, bools, null, lists, dicts)."""
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise MalformedError(f"value cannot be canonicalized: {exc}") from exc


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise NonCanonicalError(f"duplicate key {key!r} in JSON object")
        out[key] = value
    return out


def _no_float(text: str) -> Any:
    raise NonCanonicalError(f"floating-point number {text!r} is not allowed in signed payloads")


def _no_constant(text: str) -> Any:
    raise NonCanonicalError(f"{text} is not JSON")


def parse_strict(data: bytes) -> Any:
    """Parse JSON refusing duplicate keys, floats, NaN and invalid UTF-8."""
    if len(data) > MAX_PAYLOAD_BYTES:
        raise MalformedError(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError(f"payload is not UTF-8: {exc}") from exc
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as exc:
        raise MalformedError(f"payload is not JSON: {exc.msg} at offset {exc.pos}") from exc
    except RecursionError as exc:
        raise MalformedError("payload nests too deeply") from exc


def parse_canonical(data: bytes) -> dict[str, Any]:
    """Parse a signed payload: a JSON object whose bytes are exactly its RFC 8785 form."""
    value = parse_strict(data)
    if not isinstance(value, dict):
        raise MalformedError("payload must be a JSON object")
    if canonical_bytes(value) != data:
        raise NonCanonicalError("payload bytes are not RFC 8785 canonical JSON")
    return value
