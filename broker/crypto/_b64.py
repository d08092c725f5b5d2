"""Strict base64url (RFC 4648 §5, no padding) as JOSE uses it (RFC 7515 §2).

Strict on purpose: the standard library's decoder silently drops characters outside the alphabet and
accepts non-zero trailing bits, so two different strings could decode to the same bytes. Where a value
is hashed or compared as text (a JWK ``x`` that feeds a thumbprint, a token we split ourselves) that
would let one key or token have two spellings. Decoding here therefore succeeds only for the one
canonical spelling of the bytes.

How, cheaply (every envelope's ciphertext is decoded here on intake): binascii's strict mode refuses any
character outside the standard alphabet and any misplaced padding; the two base64url characters are mapped
onto it, after refusing the standard alphabet's own ``+`` and ``/`` and any ``=``. What strict mode does not
check is the last character's unused bits (4 of its 6 when the length is 2 modulo 4, 2 when it is 3, RFC
4648 §3.5): they must be zero, which is what "decodes and re-encodes to itself" (the rule this replaces,
kept as the reference in ``tests/broker/crypto/test_crypto_b64.py``) amounts to.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

__all__ = ["b64url_decode", "b64url_encode"]

_URL_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD: Final = bytes.maketrans(b"-_", b"+/")
_VALUE: Final = {char: value for value, char in enumerate(_URL_ALPHABET)}
#: length modulo 4 -> the bits of the last character that carry no data (1 is impossible, 0 has none).
_UNUSED_BITS: Final = {0: 0, 2: 0b1111, 3: 0b11}


def b64url_encode(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode canonical unpadded base64url; :class:`ValueError` for anything else."""
    if not isinstance(text, str) or not text.isascii() or len(text) % 4 == 1:
        raise ValueError("not canonical base64url")
    raw = text.encode("ascii")
    if b"+" in raw or b"/" in raw or b"=" in raw:  # the standard alphabet's own characters, and padding
        raise ValueError("not canonical base64url")
    try:
        data = binascii.a2b_base64(raw.translate(_TO_STANDARD) + b"=" * (-len(raw) % 4), strict_mode=True)
    except binascii.Error as exc:  # a character outside the alphabet
        raise ValueError("not canonical base64url") from exc
    if raw and _VALUE[raw[-1]] & _UNUSED_BITS[len(raw) % 4]:  # a second spelling of the same bytes
        raise ValueError("not canonical base64url")
    return data
