"""RFC 8785 JSON Canonicalization Scheme: the one byte form of a JSON value that gets signed or hashed.

Signatures and digests in spoc are over *values*, not over whatever bytes arrived: two parties that
parse the same envelope must compute the same signing input, whatever their JSON library's key order,
whitespace or number formatting. RFC 8785 is the standard for that and exists in Java, .NET, Go and
JavaScript, so an integrator never has to reimplement our rules (DESIGN §4: nothing home-made).

The value domain is I-JSON (RFC 7493): strings, booleans, null, lists, string-keyed objects, integers
within ±(2**53 - 1) and finite floats. Anything else (a NaN, a 2**60 integer, a ``datetime``, a
non-string key, a lone surrogate) cannot be canonicalized and raises :class:`broker.errors.InvalidInput`
instead of being coerced, because a coerced value would be signed as something the sender did not send.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import rfc8785

from broker.errors import InvalidInput

__all__ = ["canonical", "digest"]


def _plain(obj: Any) -> Any:
    # rfc8785 accepts only real dicts and lists; read-only mappings (MappingProxyType, pydantic's
    # frozen views) are the same JSON value, so they are converted rather than refused.
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


_SAFE_INT = 2**53 - 1
_FAST = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _fast_ok(obj: Any, depth: int = 0) -> bool:
    """True if ``obj`` is in the subset where the stdlib encoder's output *is* RFC 8785.

    That subset: no floats (ES6 number formatting differs from Python's repr), integers within
    +/-(2**53 - 1), strings without lone surrogates, and object keys whose UTF-16 order equals their code
    point order (all characters below U+D800, which covers every key spoc writes). String escaping already
    agrees: both escape the quote and the backslash, use the short escapes for backspace, form feed,
    newline, carriage return and tab, lowercase u00xx escapes for the other control characters, and write
    everything else as UTF-8. ``tests/broker/crypto/test_crypto_canonical_fast.py`` checks the agreement.
    """
    if depth > 64:
        return False
    if isinstance(obj, str):
        return not any("\ud800" <= c <= "\udfff" for c in obj) if not obj.isascii() else True
    if isinstance(obj, bool) or obj is None:
        return True
    if isinstance(obj, int):
        return -_SAFE_INT <= obj <= _SAFE_INT
    if isinstance(obj, dict):
        return all(
            isinstance(k, str) and (k.isascii() or all(c < "\ud800" for c in k)) and _fast_ok(v, depth + 1)
            for k, v in obj.items()
        )
    if isinstance(obj, list):
        return all(_fast_ok(v, depth + 1) for v in obj)
    return False


def canonical(obj: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``obj`` (InvalidInput if it is not I-JSON).

    Envelopes and audit entries hold only strings, integers, booleans and nulls, for which the C-backed
    stdlib encoder produces the RFC 8785 bytes directly (see ``_fast_ok``); everything else (floats,
    exotic keys) goes through the reference implementation.
    """
    plain = _plain(obj)
    if _fast_ok(plain):
        return _FAST.encode(plain).encode("utf-8")
    try:
        return rfc8785.dumps(plain)
    except (rfc8785.CanonicalizationError, RecursionError) as exc:
        raise InvalidInput(f"value cannot be canonicalized as JSON (RFC 8785): {type(exc).__name__}") from exc


def digest(obj: Any) -> str:
    """``"sha-256:"`` + lowercase hex SHA-256 of :func:`canonical` ``(obj)``.

    The algorithm is part of the value so that a stored digest says how to recompute it, and a later
    algorithm can coexist with old ones.
    """
    return "sha-256:" + hashlib.sha256(canonical(obj)).hexdigest()
