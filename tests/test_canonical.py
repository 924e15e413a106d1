"""Canonical JSON: the fast path and the general path both equal RFC 8785 (``rfc8785``)."""

from __future__ import annotations

import hashlib
import math

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhall_mcp.canonical import canonical_json, digest, sha256_hex

_SAFE_INT = st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
_FLOAT = st.floats(allow_nan=False, allow_infinity=False)
# Full unicode, astral planes included (UTF-16 key ordering differs from code points there).
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_ASTRAL = st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF), max_size=3)
_KEY = st.one_of(_TEXT, _ASTRAL, st.tuples(_TEXT, _ASTRAL).map("".join))

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), _SAFE_INT, _FLOAT, _TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(_KEY, inner, max_size=5),
    ),
    max_leaves=25,
)


@settings(max_examples=250, deadline=None)
@given(JSON)
def test_canonical_json_equals_rfc8785(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=120, deadline=None)
@given(st.dictionaries(_KEY, st.one_of(_SAFE_INT, _TEXT, st.booleans()), max_size=8))
def test_flat_objects_equal_rfc8785(value: dict[str, object]) -> None:
    # The fast path's own territory: no floats, so it must agree byte for byte.
    assert canonical_json(value) == rfc8785.dumps(value)


def test_astral_keys_sort_by_utf16_code_units() -> None:
    # U+1F600 is D83D DE00 in UTF-16: it sorts before U+FF61 there, after it by code point.
    value = {"\uff61": 1, "\U0001f600": 2}
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json(value).index("\U0001f600".encode()) < canonical_json(value).index(
        "\uff61".encode()
    )


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**64, math.nan, math.inf])
def test_values_outside_rfc8785_are_refused(value: object) -> None:
    with pytest.raises((ValueError, TypeError, rfc8785.CanonicalizationError)):
        canonical_json({"v": value})


def test_tuples_are_arrays_and_floats_use_shortest_form() -> None:
    assert canonical_json({"b": (1, 2), "a": 1.0, "c": 1e21}) == b'{"a":1,"b":[1,2],"c":1e+21}'


def test_digest_and_sha256_hex() -> None:
    value = {"z": "é", "a": [True, None]}
    expected = hashlib.sha256(rfc8785.dumps(value)).hexdigest()
    assert digest(value) == "sha256:" + expected
    assert sha256_hex("abc") == sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert digest({"a": 1}) != digest({"a": 2})
