"""The fast canonical encoder and checker against the reference ``rfc8785`` package."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ostraca.protocol_spec import MalformedError, NonCanonicalError, canonical_bytes
from ostraca.protocol_spec.canonical import parse_canonical

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters chosen to hit every branch: ASCII, controls, escapes, DEL, U+2028, the private-use
# area just above the surrogates (sorts after astral characters in UTF-16), astral characters,
# and lone surrogates (which have no UTF-8 form).
_chars = st.one_of(
    st.characters(min_codepoint=0, max_codepoint=0x7F),
    st.sampled_from(["\u2028", "\ue000", "\uffff", "é", "\U0001f600", "\U00010000", "\ud800"]),
    st.characters(),
)
texts = st.text(_chars, max_size=8)
ints = st.one_of(
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.sampled_from([2**53 - 1, -(2**53) + 1, 2**53, -(2**53), 10**30]),
)
scalars = st.one_of(st.none(), st.booleans(), ints, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=20,
)
json_objects = st.dictionaries(texts, json_values, max_size=5)


def _reference(value: Any) -> bytes | None:
    try:
        return rfc8785.dumps(value)
    except ValueError:  # CanonicalizationError, or UnicodeEncodeError for a lone surrogate key
        return None


@FAST
@given(json_values)
def test_canonical_bytes_equals_rfc8785(value: Any) -> None:
    expected = _reference(value)
    if expected is None:
        with pytest.raises(MalformedError):
            canonical_bytes(value)
    else:
        assert canonical_bytes(value) == expected


@FAST
@given(st.one_of(json_values, st.floats(allow_nan=True), st.tuples(ints, texts)))
def test_values_outside_the_subset_behave_like_rfc8785(value: Any) -> None:
    try:
        expected: bytes | None = rfc8785.dumps(value)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(MalformedError):
            canonical_bytes(value)
    else:
        assert canonical_bytes(value) == expected


@FAST
@given(json_objects)
def test_parse_canonical_accepts_exactly_the_rfc8785_bytes(value: dict[str, Any]) -> None:
    expected = _reference(value)
    if expected is None:
        return
    assert parse_canonical(expected) == value


@FAST
@given(json_objects, st.sampled_from(["sorted-spaced", "unsorted", "ascii-escaped", "python"]))
def test_parse_canonical_refuses_every_other_serialization(
    value: dict[str, Any], style: str
) -> None:
    expected = _reference(value)
    if expected is None:
        return
    if style == "sorted-spaced":
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    elif style == "unsorted":
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    elif style == "ascii-escaped":
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    else:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    data = text.encode("utf-8", "surrogatepass")
    if data == expected:
        assert parse_canonical(data) == value
    else:
        with pytest.raises(NonCanonicalError):
            parse_canonical(data)


def test_key_order_is_utf16_not_code_point() -> None:
    value = {"\ue000": 1, "\U0001f600": 2}
    assert canonical_bytes(value) == rfc8785.dumps(value)
    assert canonical_bytes(value).index("\U0001f600".encode()) < canonical_bytes(value).index(
        "\ue000".encode()
    )
    wrong = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    with pytest.raises(NonCanonicalError):
        parse_canonical(wrong.encode())
    assert parse_canonical(canonical_bytes(value)) == value
