"""RFC 8785 canonical form and digests: known answers and the refusal of non-I-JSON values."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.crypto import canonical, digest
from broker.errors import InvalidInput


def test_rfc8785_section_3_2_2_example() -> None:
    source = json.loads(
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()
    assert canonical(source) == expected


def test_keys_sorted_by_utf16_code_units() -> None:
    # RFC 8785 §3.2.3 sorts by UTF-16 code units: U+1F600 is D83D DE00, which sorts *before* U+FB33,
    # the opposite of code point order.
    assert canonical({"b": 1, "a": 2}) == b'{"a":2,"b":1}'
    assert canonical({"\U0001f600": 1, "\ufb33": 2}) == '{"\U0001f600":1,"\ufb33":2}'.encode()


def test_digest_known_answer() -> None:
    # SHA-256("{}")
    assert digest({}) == "sha-256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def test_read_only_mappings_and_tuples_are_plain_json() -> None:
    assert canonical(MappingProxyType({"a": (1, 2)})) == b'{"a":[1,2]}'


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="infinity"),
        pytest.param(2**60, id="integer-beyond-i-json"),
        pytest.param({1: "a"}, id="non-string-key"),
        pytest.param(datetime.now(UTC), id="datetime"),
        pytest.param(b"bytes", id="bytes"),
        pytest.param("\ud800", id="lone-surrogate"),
    ],
)
def test_refuses_non_i_json(value: Any) -> None:
    with pytest.raises(InvalidInput):
        canonical({"v": value})


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=25, deadline=None)
@given(_json)
def test_canonical_is_a_fixed_point(value: Any) -> None:
    """Parsing the canonical form and canonicalising again gives the same bytes (what verifiers rely on)."""
    once = canonical(value)
    assert canonical(json.loads(once)) == once
