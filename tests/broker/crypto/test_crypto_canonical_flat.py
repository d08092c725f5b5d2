"""``canonical_flat`` (the sequencer's cheaper check for audit entries) gives exactly ``canonical``'s bytes,
whatever the record holds: in the expected shape, and with every kind of value that must fall back."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.crypto.canonical import canonical, canonical_flat
from broker.errors import InvalidInput

text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
anything = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False) | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=20,
)
records = st.dictionaries(st.sampled_from(["id", "at", "actor", "details", "countries", "é", "z"]), anything)


@settings(max_examples=500, deadline=None)
@given(records)
def test_same_bytes_as_canonical_or_the_same_refusal(record: dict[str, Any]) -> None:
    try:
        expected = canonical(record)
    except InvalidInput:
        with pytest.raises(InvalidInput):
            canonical_flat(record, nested=("details", "countries"))
        return
    assert canonical_flat(record, nested=("details", "countries")) == expected == rfc8785.dumps(record)


def test_an_audit_entry_and_the_fallbacks() -> None:
    entry = {
        "id": 7,
        "at": "2026-11-23T12:00:00.000001Z",
        "actor": "AL-ASP",
        "object_id": None,
        "countries": ["AL", "RS"],
        "details": {"n": 1, "note": "ünï \u2028", "deep": [{"b": 1, "a": [True, None]}]},
    }
    assert canonical_flat(entry, nested=("details", "countries")) == canonical(entry)
    for odd in ({"id": 2**60}, {"id": 1.5}, {"actor": "é"}, {"actor": True}, {"details": {"x": 0.1}}):
        record = {**entry, **odd}
        try:
            assert canonical_flat(record, nested=("details", "countries")) == canonical(record)
        except InvalidInput:
            with pytest.raises(InvalidInput):
                canonical(record)
