"""Strict base64url (RFC 4648 §5, no padding) as JOSE uses it (RFC 7515 §2).

Strict on purpose: the standard library's decoder silently drops characters outside the alphabet and
accepts non-zero trailing bits, so two different strings could decode to the same bytes. Where a value
is hashed or compared as text (a JWK ``x`` that feeds a thumbprint, a token we split ourselves) that
would let one key or token have two spellings. Decoding here therefore succeeds only for the one
canonical spelling of the bytes.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["b64url_decode", "b64url_encode"]

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode canonical unpadded base64url; :class:`ValueError` for anything else."""
    if not isinstance(text, str) or not _ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not canonical base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:  # pragma: no cover - excluded by the checks above
        raise ValueError("not canonical base64url") from exc
    if b64url_encode(data) != text:  # non-zero trailing bits: a second spelling of the same bytes
        raise ValueError("not canonical base64url")
    return data
