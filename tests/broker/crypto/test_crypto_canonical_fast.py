"""The fast canonical path must give exactly the bytes of the reference RFC 8785 implementation."""

from __future__ import annotations

from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.crypto.canonical import _fast_ok, canonical

json_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)  # no lone surrogates
scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | json_text
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(json_text, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_fast_path_equals_rfc8785(value: Any) -> None:
    assert canonical(value) == rfc8785.dumps(value)


def test_control_characters_and_escapes() -> None:
    value = {"k": "".join(chr(c) for c in range(0, 0x80)) + "é€😀"}
    assert _fast_ok(value)
    assert canonical(value) == rfc8785.dumps(value)


def test_floats_and_large_integers_take_the_reference_path() -> None:
    assert not _fast_ok({"x": 1.5})
    assert not _fast_ok({"x": 2**53})
    assert canonical({"x": 1.5, "y": 1e21}) == rfc8785.dumps({"x": 1.5, "y": 1e21})


def test_keys_beyond_the_surrogate_range_take_the_reference_path() -> None:
    value = {"\U0001f600": 1, "\ufb01": 2}  # UTF-16 order differs from code point order here
    assert not _fast_ok(value)
    assert canonical(value) == rfc8785.dumps(value)
