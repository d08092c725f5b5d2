"""``b64url_decode`` accepts exactly the canonical spellings: the same answers as the rule it replaced
(alphabet check, decode, re-encode to the same text), on every short string and on random ones."""

from __future__ import annotations

import base64
import binascii
import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.crypto._b64 import b64url_decode, b64url_encode

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: Characters a lenient decoder would skip, map or accept as padding.
ODD = "+/= \n\t.\x00é\u2028"
_REFERENCE_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def reference(text: object) -> bytes | None:
    """The previous definition: None where it refused."""
    if not isinstance(text, str) or not _REFERENCE_ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:  # the old rule kept it; the checks above leave nothing to raise
        return None
    return data if b64url_encode(data) == text else None


def decoded(text: object) -> bytes | None:
    try:
        return b64url_decode(text)  # type: ignore[arg-type]  # any object: what a JSON member can be
    except ValueError:
        return None


def test_every_string_of_up_to_two_characters() -> None:
    chars = ALPHABET + ODD
    for length in range(3):
        for combo in itertools.product(chars, repeat=length):
            text = "".join(combo)
            assert decoded(text) == reference(text), repr(text)


def test_every_last_character_at_each_length() -> None:
    """The unused bits live in the last character: try all of them after prefixes of every length mod 4."""
    for prefix in ("", "Q", "QU", "QUJ", "QUJD", "QUJDR", "QUJDRA", "QUJDRA-", "QUJDRA_x"):
        for last in ALPHABET + ODD:
            text = prefix + last
            assert decoded(text) == reference(text), repr(text)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(ALPHABET + ODD), max_size=40) | st.text(max_size=12))
def test_random_strings(text: str) -> None:
    assert decoded(text) == reference(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_round_trip(data: bytes) -> None:
    assert b64url_decode(b64url_encode(data)) == data


@pytest.mark.parametrize("value", [None, 12, b"QQ", ["QQ"]])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"^not canonical base64url$"):
        b64url_decode(value)  # type: ignore[arg-type]  # on purpose: not a str


@pytest.mark.parametrize("text", ["QR", "QUK", "QQ==", "QQ=", "Q+", "Q/", "QQ\n", " QQ", "QQ QQ", "Q"])
def test_second_spellings_and_foreign_characters_are_refused(text: str) -> None:
    assert reference(text) is None
    with pytest.raises(ValueError, match=r"^not canonical base64url$"):
        b64url_decode(text)
